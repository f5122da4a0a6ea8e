// chart-render: renders a Helm chart (apiVersion v2) the way `helm template`
// does, for the chart render test, with Go's text/template, sprig and YAML
// from Debian's packages (no Helm binary, no network), and checks what it
// rendered.
//
//	chart-render [-f values.yaml]... [--set-release NAME] [--namespace NS]
//	             [--kube-version 1.30.0] [--out FILE] [--config-out FILE]
//	             [--json-out FILE]
//	             [--check] [--check-values-comments] CHART_DIR
//
// What it implements of Helm: Chart.yaml (name, version, appVersion,
// kubeVersion checked against --kube-version), values.yaml merged with each
// -f file in order (maps merged deeply, a null deletes the key, anything
// else replaces), templates/*.yaml|tpl|txt parsed into one template set
// named <chart>/templates/<file> so that `define`d templates in _helpers.tpl
// are shared, files starting with "_" not rendered, NOTES.txt rendered
// but not output, the
// objects .Values .Release (Name, Namespace, Service, IsInstall, IsUpgrade,
// Revision) .Chart (Name, Version, AppVersion, ...) .Capabilities
// (KubeVersion.Version/Major/Minor, APIVersions.Has) .Template (Name,
// BasePath) .Files (Get, Glob), the functions of sprig plus include, tpl,
// required, toYaml, fromYaml, toJson, fromJson, lookup (empty), and
// "<no value>" turned into "" as Helm does. Output: the documents in file
// order, each after a "# Source: <chart>/templates/<file>" line.
//
// --check verifies every rendered document: it parses as YAML, has
// apiVersion, kind and metadata.name, uses only field names of its kind
// (for the kinds this chart renders: an unknown or misspelled field is an
// error, as the API server's strict validation would make it), and for a
// DaemonSet: the selector matches the pod labels, containers have names and
// images, every volumeMount names a volume of the pod, probes name a
// declared port, names are unique. --config-out writes the data key
// config.yaml of the ConfigMap (the daemon's config) to a file; --json-out
// the rendered objects as a JSON array.
// --check-values-comments fails when a key of the chart's values.yaml has
// no comment above it (except inside Kubernetes objects given as values).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var valueFiles multiFlag
	flag.Var(&valueFiles, "f", "values file merged over the chart's values.yaml (repeatable)")
	release := flag.String("release", "rafs-snapshotter", "release name")
	namespace := flag.String("namespace", "kube-system", "release namespace")
	kubeVersion := flag.String("kube-version", "1.30.0", "Kubernetes version for .Capabilities")
	out := flag.String("out", "", "write the rendered manifests here (default stdout)")
	configOut := flag.String("config-out", "", "write the ConfigMap's config.yaml here")
	jsonOut := flag.String("json-out", "", "write the rendered objects here as a JSON array")
	check := flag.Bool("check", false, "check the rendered documents")
	checkComments := flag.Bool("check-values-comments", false, "every values.yaml key has a comment")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: chart-render [flags] CHART_DIR")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), valueFiles, *release, *namespace, *kubeVersion, *out, *configOut,
		*jsonOut, *check, *checkComments); err != nil {
		fmt.Fprintln(os.Stderr, "chart-render:", err)
		os.Exit(1)
	}
}

func run(chartDir string, valueFiles []string, release, namespace, kubeVersion, out,
	configOut, jsonOut string, check, checkComments bool) error {
	chartMeta, err := readYAMLMap(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	if chartMeta["apiVersion"] != "v2" {
		return fmt.Errorf("Chart.yaml: apiVersion %v, want v2", chartMeta["apiVersion"])
	}
	for _, k := range []string{"name", "version"} {
		if s, _ := chartMeta[k].(string); s == "" {
			return fmt.Errorf("Chart.yaml: %s is required", k)
		}
	}
	if _, err := semver.StrictNewVersion(chartMeta["version"].(string)); err != nil {
		return fmt.Errorf("Chart.yaml: version %q is not SemVer 2: %v", chartMeta["version"], err)
	}
	kv, err := semver.NewVersion(kubeVersion)
	if err != nil {
		return fmt.Errorf("--kube-version: %v", err)
	}
	if c, ok := chartMeta["kubeVersion"].(string); ok && c != "" {
		constraint, err := semver.NewConstraint(c)
		if err != nil {
			return fmt.Errorf("Chart.yaml: kubeVersion %q: %v", c, err)
		}
		if !constraint.Check(kv) {
			return fmt.Errorf("chart requires kubeVersion %s, which is incompatible with %s", c, kubeVersion)
		}
	}

	valuesPath := filepath.Join(chartDir, "values.yaml")
	values, err := readYAMLMap(valuesPath)
	if err != nil {
		return err
	}
	if checkComments {
		if err := checkValuesComments(valuesPath); err != nil {
			return err
		}
	}
	for _, f := range valueFiles {
		over, err := readYAMLMap(f)
		if err != nil {
			return err
		}
		values = mergeValues(values, over)
	}

	name := chartMeta["name"].(string)
	chartObj := map[string]interface{}{}
	for k, v := range chartMeta {
		// Helm exposes Chart.yaml fields capitalised (.Chart.AppVersion).
		chartObj[strings.ToUpper(k[:1])+k[1:]] = v
	}
	files := &chartFiles{dir: chartDir}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": chartObj,
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{
				"Version": "v" + kv.String(), "Major": strconv.FormatUint(kv.Major(), 10),
				"Minor": strconv.FormatUint(kv.Minor(), 10), "GitVersion": "v" + kv.String(),
			},
			"APIVersions": apiVersions{"v1", "apps/v1", "apps/v1/DaemonSet", "v1/ConfigMap",
				"v1/ServiceAccount", "scheduling.k8s.io/v1", "node.k8s.io/v1"},
			"HelmVersion": map[string]interface{}{"Version": "v3.14.0"},
		},
		"Files": files,
	}

	rendered, err := renderTemplates(chartDir, name, top)
	if err != nil {
		return err
	}

	var buf bytes.Buffer
	var docs []document
	for _, r := range rendered {
		for _, text := range splitDocuments(r.text) {
			if strings.TrimSpace(stripComments(text)) == "" {
				continue
			}
			fmt.Fprintf(&buf, "---\n# Source: %s\n%s\n", r.name, strings.TrimRight(text, "\n"))
			docs = append(docs, document{source: r.name, text: text})
		}
	}
	if out == "" {
		os.Stdout.Write(buf.Bytes())
	} else if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return err
	}

	var problems []string
	objects := []map[string]interface{}{}
	for _, d := range docs {
		var obj map[string]interface{}
		if err := yaml.Unmarshal([]byte(d.text), &obj); err != nil {
			problems = append(problems, fmt.Sprintf("%s: not YAML: %v", d.source, err))
			continue
		}
		objects = append(objects, obj)
		if check {
			for _, p := range checkObject(obj) {
				problems = append(problems, fmt.Sprintf("%s: %s", d.source, p))
			}
		}
	}
	if jsonOut != "" {
		b, err := json.MarshalIndent(objects, "", "  ")
		if err != nil {
			return fmt.Errorf("--json-out: %v", err)
		}
		if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if check && len(objects) == 0 {
		problems = append(problems, "nothing rendered")
	}
	if configOut != "" {
		found := false
		for _, o := range objects {
			if o["kind"] != "ConfigMap" {
				continue
			}
			data, _ := o["data"].(map[string]interface{})
			if c, ok := data["config.yaml"].(string); ok {
				if err := os.WriteFile(configOut, []byte(c), 0o644); err != nil {
					return err
				}
				found = true
			}
		}
		if !found {
			problems = append(problems, "no ConfigMap with data config.yaml")
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n  "))
	}
	return nil
}

type document struct {
	source, text string
}

type renderedFile struct {
	name, text string
}

// apiVersions answers .Capabilities.APIVersions.Has.
type apiVersions []string

func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

// chartFiles is .Files: the chart's files other than templates.
type chartFiles struct{ dir string }

func (f *chartFiles) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.dir, filepath.FromSlash(name)))
	if err != nil {
		return ""
	}
	return string(b)
}

func (f *chartFiles) Glob(pattern string) map[string]string {
	out := map[string]string{}
	matches, _ := filepath.Glob(filepath.Join(f.dir, filepath.FromSlash(pattern)))
	for _, m := range matches {
		rel, _ := filepath.Rel(f.dir, m)
		b, err := os.ReadFile(m)
		if err == nil {
			out[filepath.ToSlash(rel)] = string(b)
		}
	}
	return out
}

func renderTemplates(chartDir, chartName string, top map[string]interface{}) ([]renderedFile, error) {
	entries, err := os.ReadDir(filepath.Join(chartDir, "templates"))
	if err != nil {
		return nil, err
	}
	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	// Helm's own functions. include and tpl need the template set itself.
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	includeDepth := 0
	funcs["include"] = func(name string, data interface{}) (string, error) {
		includeDepth++
		defer func() { includeDepth-- }()
		if includeDepth > 1000 {
			return "", fmt.Errorf("include %q: too deep (recursion?)", name)
		}
		var b strings.Builder
		if err := root.ExecuteTemplate(&b, name, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(b.String(), "<no value>", ""), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		if err := t.Execute(&b, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(b.String(), "<no value>", ""), nil
	}
	root.Funcs(funcs).Option("missingkey=zero")

	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		n := e.Name()
		ext := path.Ext(n)
		if ext != ".yaml" && ext != ".yml" && ext != ".tpl" && ext != ".txt" {
			continue
		}
		full := chartName + "/templates/" + n
		b, err := os.ReadFile(filepath.Join(chartDir, "templates", n))
		if err != nil {
			return nil, err
		}
		if _, err := root.New(full).Parse(string(b)); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var out []renderedFile
	for _, n := range names {
		if strings.HasPrefix(n, "_") {
			continue
		}
		full := chartName + "/templates/" + n
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{
			"Name": full, "BasePath": chartName + "/templates",
		}
		var b strings.Builder
		if err := root.ExecuteTemplate(&b, full, data); err != nil {
			return nil, err
		}
		if n == "NOTES.txt" {
			continue // rendered (so its errors count), not a manifest
		}
		out = append(out, renderedFile{name: full, text: strings.ReplaceAll(b.String(), "<no value>", "")})
	}
	return out, nil
}

// toYAML is Helm's toYaml: YAML without the trailing newline, "" on error.
func toYAML(v interface{}) string {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	enc.Close()
	s := strings.TrimSuffix(b.String(), "\n")
	if s == "{}" || s == "[]" || s == "null" {
		return s
	}
	return s
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

// mergeValues puts `over` on top of `base`: maps merge key by key, a null
// removes the key, other values replace.
func mergeValues(base, over map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if v == nil {
			delete(out, k)
			continue
		}
		bm, bok := out[k].(map[string]interface{})
		om, ook := v.(map[string]interface{})
		if bok && ook {
			out[k] = mergeValues(bm, om)
		} else {
			out[k] = v
		}
	}
	return out
}

func readYAMLMap(p string) (map[string]interface{}, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", p, err)
	}
	return m, nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

func splitDocuments(s string) []string { return docSeparator.Split(s, -1) }

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		b.WriteString(l)
		b.WriteString("\n")
	}
	return b.String()
}

// checkValuesComments: every key of values.yaml has a comment right above
// it, except keys inside these Kubernetes objects given as values.
var freeForm = map[string]bool{
	"resources": true, "updateStrategy": true, "tolerations": true,
	"fdKeeper.resources": true, "affinity": true, "nodeSelector": true,
	"podAnnotations": true, "commonLabels": true, "serviceAccount.annotations": true,
	"extraVolumes": true, "extraVolumeMounts": true, "imagePullSecrets": true,
	"config.registry.plain_http": true, "config.registry.insecure": true,
}

func checkValuesComments(p string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	var missing []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			if prefix != "" {
				key = prefix + "." + k.Value
			}
			if strings.TrimSpace(k.HeadComment) == "" {
				missing = append(missing, fmt.Sprintf("%s (line %d)", key, k.Line))
			}
			if !freeForm[key] {
				walk(v, key)
			}
		}
	}
	if len(doc.Content) == 1 {
		walk(doc.Content[0], "")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: keys without a comment: %s", p, strings.Join(missing, ", "))
	}
	return nil
}
