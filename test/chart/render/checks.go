// Checks of rendered Kubernetes objects: required fields, field names of
// the kinds this chart renders (from the Kubernetes API reference, v1.30:
// only fields listed here may appear, so a misspelling is caught as the API
// server's strict field validation would catch it), value types, and the
// cross references within a DaemonSet's pod.
package main

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

type fields map[string]string // field name -> schema name ("" : any value)

// Schemas by name. Values name another schema, "[]X" a list of X, "map" a
// map of strings, "string", "int", "bool", "intOrString", or "" (any).
var schemas = map[string]fields{
	"ObjectMeta": {
		"name": "string", "namespace": "string", "labels": "map", "annotations": "map",
		"generateName": "string", "finalizers": "[]string", "ownerReferences": "",
	},
	"ConfigMap": {
		"apiVersion": "string", "kind": "string", "metadata": "ObjectMeta", "data": "map",
		"binaryData": "map", "immutable": "bool",
	},
	"ServiceAccount": {
		"apiVersion": "string", "kind": "string", "metadata": "ObjectMeta",
		"automountServiceAccountToken": "bool", "imagePullSecrets": "[]LocalObjectReference",
		"secrets": "",
	},
	"DaemonSet": {
		"apiVersion": "string", "kind": "string", "metadata": "ObjectMeta", "spec": "DaemonSetSpec",
	},
	"DaemonSetSpec": {
		"selector": "LabelSelector", "template": "PodTemplateSpec", "updateStrategy": "DaemonSetUpdateStrategy",
		"minReadySeconds": "int", "revisionHistoryLimit": "int",
	},
	"LabelSelector": {"matchLabels": "map", "matchExpressions": ""},
	"DaemonSetUpdateStrategy": {
		"type": "string", "rollingUpdate": "RollingUpdateDaemonSet",
	},
	"RollingUpdateDaemonSet": {"maxUnavailable": "intOrString", "maxSurge": "intOrString"},
	"PodTemplateSpec":        {"metadata": "ObjectMeta", "spec": "PodSpec"},
	"PodSpec": {
		"activeDeadlineSeconds": "int", "affinity": "", "automountServiceAccountToken": "bool",
		"containers": "[]Container", "dnsConfig": "", "dnsPolicy": "string",
		"enableServiceLinks": "bool", "ephemeralContainers": "", "hostAliases": "",
		"hostIPC": "bool", "hostNetwork": "bool", "hostPID": "bool", "hostUsers": "bool",
		"hostname": "string", "imagePullSecrets": "[]LocalObjectReference",
		"initContainers": "[]Container", "nodeName": "string", "nodeSelector": "map", "os": "",
		"overhead": "", "preemptionPolicy": "string", "priority": "int",
		"priorityClassName": "string", "readinessGates": "", "resourceClaims": "",
		"restartPolicy": "string", "runtimeClassName": "string", "schedulerName": "string",
		"schedulingGates": "", "securityContext": "", "serviceAccount": "string",
		"serviceAccountName": "string", "setHostnameAsFQDN": "bool", "shareProcessNamespace": "bool",
		"subdomain": "string", "terminationGracePeriodSeconds": "int",
		"tolerations": "[]Toleration", "topologySpreadConstraints": "", "volumes": "[]Volume",
	},
	"LocalObjectReference": {"name": "string"},
	"Toleration": {
		"key": "string", "operator": "string", "value": "string", "effect": "string",
		"tolerationSeconds": "int",
	},
	"Container": {
		"args": "[]string", "command": "[]string", "env": "[]EnvVar", "envFrom": "",
		"image": "string", "imagePullPolicy": "string", "lifecycle": "", "livenessProbe": "Probe",
		"name": "string", "ports": "[]ContainerPort", "readinessProbe": "Probe",
		"resizePolicy": "", "resources": "ResourceRequirements", "restartPolicy": "string",
		"securityContext": "SecurityContext", "startupProbe": "Probe", "stdin": "bool",
		"stdinOnce": "bool", "terminationMessagePath": "string",
		"terminationMessagePolicy": "string", "tty": "bool", "volumeDevices": "",
		"volumeMounts": "[]VolumeMount", "workingDir": "string",
	},
	"EnvVar":        {"name": "string", "value": "string", "valueFrom": ""},
	"ContainerPort": {"containerPort": "int", "hostIP": "string", "hostPort": "int", "name": "string", "protocol": "string"},
	"Probe": {
		"exec": "ExecAction", "failureThreshold": "int", "grpc": "", "httpGet": "HTTPGetAction",
		"initialDelaySeconds": "int", "periodSeconds": "int", "successThreshold": "int",
		"tcpSocket": "", "terminationGracePeriodSeconds": "int", "timeoutSeconds": "int",
	},
	"ExecAction": {"command": "[]string"},
	"HTTPGetAction": {
		"host": "string", "httpHeaders": "", "path": "string", "port": "intOrString", "scheme": "string",
	},
	"ResourceRequirements": {"limits": "map", "requests": "map", "claims": ""},
	"SecurityContext": {
		"allowPrivilegeEscalation": "bool", "appArmorProfile": "", "capabilities": "",
		"privileged": "bool", "procMount": "string", "readOnlyRootFilesystem": "bool",
		"runAsGroup": "int", "runAsNonRoot": "bool", "runAsUser": "int", "seLinuxOptions": "",
		"seccompProfile": "", "windowsOptions": "",
	},
	"VolumeMount": {
		"mountPath": "string", "mountPropagation": "string", "name": "string", "readOnly": "bool",
		"recursiveReadOnly": "string", "subPath": "string", "subPathExpr": "string",
	},
	"Volume": {
		"name": "string", "hostPath": "HostPathVolumeSource", "configMap": "ConfigMapVolumeSource",
		"secret": "SecretVolumeSource", "emptyDir": "", "projected": "", "downwardAPI": "",
		"persistentVolumeClaim": "", "csi": "", "ephemeral": "",
	},
	"HostPathVolumeSource": {"path": "string", "type": "string"},
	"ConfigMapVolumeSource": {
		"name": "string", "items": "[]KeyToPath", "defaultMode": "int", "optional": "bool",
	},
	"SecretVolumeSource": {
		"secretName": "string", "items": "[]KeyToPath", "defaultMode": "int", "optional": "bool",
	},
	"KeyToPath": {"key": "string", "path": "string", "mode": "int"},
}

var (
	enumValues = map[string][]string{
		"imagePullPolicy":  {"Always", "IfNotPresent", "Never"},
		"mountPropagation": {"None", "HostToContainer", "Bidirectional"},
		"dnsPolicy":        {"ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"},
		"protocol":         {"TCP", "UDP", "SCTP"},
	}
	hostPathTypes = []string{"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File",
		"Socket", "CharDevice", "BlockDevice"}
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Sub   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	portName     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

var kindAPIVersion = map[string]string{
	"ConfigMap": "v1", "ServiceAccount": "v1", "DaemonSet": "apps/v1",
}

func checkObject(obj map[string]interface{}) []string {
	var p []string
	kind, _ := obj["kind"].(string)
	apiVersion, _ := obj["apiVersion"].(string)
	meta, _ := obj["metadata"].(map[string]interface{})
	name, _ := meta["name"].(string)
	if apiVersion == "" || kind == "" || name == "" {
		return []string{"apiVersion, kind and metadata.name are required"}
	}
	want, known := kindAPIVersion[kind]
	if !known {
		return []string{fmt.Sprintf("kind %s is not one this check knows (add its schema)", kind)}
	}
	if apiVersion != want {
		p = append(p, fmt.Sprintf("%s: apiVersion %s, want %s", kind, apiVersion, want))
	}
	if len(name) > 253 || !dns1123Sub.MatchString(name) {
		p = append(p, fmt.Sprintf("metadata.name %q is not a DNS subdomain", name))
	}
	p = append(p, checkSchema(obj, kind, kind)...)
	if kind == "ConfigMap" {
		if data, ok := obj["data"].(map[string]interface{}); ok {
			for k := range data {
				if !regexp.MustCompile(`^[-._a-zA-Z0-9]+$`).MatchString(k) {
					p = append(p, fmt.Sprintf("data key %q is not a valid ConfigMap key", k))
				}
			}
		}
	}
	if kind == "DaemonSet" {
		p = append(p, checkDaemonSet(obj)...)
	}
	return p
}

// checkSchema walks v against schema s; where is the field path.
func checkSchema(v interface{}, s, where string) []string {
	var p []string
	if v == nil {
		return nil // a null is an omitted field
	}
	if strings.HasPrefix(s, "[]") {
		list, ok := v.([]interface{})
		if !ok {
			return []string{fmt.Sprintf("%s: expected a list", where)}
		}
		for i, item := range list {
			p = append(p, checkSchema(item, s[2:], fmt.Sprintf("%s[%d]", where, i))...)
		}
		return p
	}
	switch s {
	case "":
		return nil
	case "string":
		if _, ok := v.(string); !ok {
			return []string{fmt.Sprintf("%s: expected a string, got %T (%v)", where, v, v)}
		}
		return nil
	case "int":
		if _, ok := v.(int); !ok {
			return []string{fmt.Sprintf("%s: expected an integer, got %T (%v)", where, v, v)}
		}
		return nil
	case "bool":
		if _, ok := v.(bool); !ok {
			return []string{fmt.Sprintf("%s: expected true or false, got %T (%v)", where, v, v)}
		}
		return nil
	case "intOrString":
		switch v.(type) {
		case int, string:
			return nil
		}
		return []string{fmt.Sprintf("%s: expected an integer or a string, got %T", where, v)}
	case "map":
		m, ok := v.(map[string]interface{})
		if !ok {
			return []string{fmt.Sprintf("%s: expected a map of strings", where)}
		}
		for k, x := range m {
			if _, ok := x.(string); !ok {
				p = append(p, fmt.Sprintf("%s.%s: expected a string, got %T (%v); quote it", where, k, x, x))
			}
		}
		return p
	}
	f, ok := schemas[s]
	if !ok {
		return []string{fmt.Sprintf("%s: no schema %s", where, s)}
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return []string{fmt.Sprintf("%s: expected an object (%s)", where, s)}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sub, known := f[k]
		if !known {
			p = append(p, fmt.Sprintf("%s: unknown field %q in %s", where, k, s))
			continue
		}
		p = append(p, checkSchema(m[k], sub, where+"."+k)...)
		if allowed, ok := enumValues[k]; ok {
			if str, isStr := m[k].(string); isStr && !contains(allowed, str) {
				p = append(p, fmt.Sprintf("%s.%s: %q is not one of %v", where, k, str, allowed))
			}
		}
	}
	return p
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func get(m interface{}, path ...string) interface{} {
	for _, k := range path {
		mm, ok := m.(map[string]interface{})
		if !ok {
			return nil
		}
		m = mm[k]
	}
	return m
}

func asList(v interface{}) []interface{} {
	l, _ := v.([]interface{})
	return l
}

func checkDaemonSet(obj map[string]interface{}) []string {
	var p []string
	selector, _ := get(obj, "spec", "selector", "matchLabels").(map[string]interface{})
	labels, _ := get(obj, "spec", "template", "metadata", "labels").(map[string]interface{})
	if len(selector) == 0 {
		p = append(p, "spec.selector.matchLabels is empty")
	}
	for k, v := range selector {
		if labels[k] != v {
			p = append(p, fmt.Sprintf("selector %s=%v does not match the pod label (%v)", k, v, labels[k]))
		}
	}
	if t, _ := get(obj, "spec", "updateStrategy", "type").(string); t != "" && t != "OnDelete" && t != "RollingUpdate" {
		p = append(p, fmt.Sprintf("updateStrategy.type %q is not OnDelete or RollingUpdate", t))
	}
	if t, _ := get(obj, "spec", "updateStrategy", "type").(string); t == "OnDelete" && get(obj, "spec", "updateStrategy", "rollingUpdate") != nil {
		p = append(p, "updateStrategy.rollingUpdate is only allowed with type RollingUpdate")
	}
	pod := get(obj, "spec", "template", "spec")
	if rp, _ := get(pod, "restartPolicy").(string); rp != "" && rp != "Always" {
		p = append(p, "a DaemonSet's pods must have restartPolicy Always")
	}
	if get(pod, "hostNetwork") == true {
		if dp, _ := get(pod, "dnsPolicy").(string); dp != "ClusterFirstWithHostNet" {
			p = append(p, "hostNetwork pods need dnsPolicy ClusterFirstWithHostNet to resolve cluster names")
		}
	}
	volumes := map[string]map[string]interface{}{}
	for i, v := range asList(get(pod, "volumes")) {
		vm, _ := v.(map[string]interface{})
		n, _ := vm["name"].(string)
		if !dns1123Label.MatchString(n) {
			p = append(p, fmt.Sprintf("volumes[%d].name %q is not a DNS label", i, n))
		}
		if _, dup := volumes[n]; dup {
			p = append(p, fmt.Sprintf("volume %q defined twice", n))
		}
		volumes[n] = vm
		sources := 0
		for k := range vm {
			if k != "name" {
				sources++
			}
		}
		if sources != 1 {
			p = append(p, fmt.Sprintf("volume %q must have exactly one source, has %d", n, sources))
		}
		if hp, ok := vm["hostPath"].(map[string]interface{}); ok {
			path, _ := hp["path"].(string)
			if !strings.HasPrefix(path, "/") {
				p = append(p, fmt.Sprintf("volume %q: hostPath %q is not absolute", n, path))
			}
			if t, _ := hp["type"].(string); !contains(hostPathTypes, t) {
				p = append(p, fmt.Sprintf("volume %q: hostPath type %q is not valid", n, t))
			}
		}
	}
	containerNames := map[string]bool{}
	initContainers := asList(get(pod, "initContainers"))
	containers := asList(get(pod, "containers"))
	if len(containers) == 0 {
		p = append(p, "the pod has no containers")
	}
	all := append(append([]interface{}{}, initContainers...), containers...)
	for i, c := range all {
		isInit := i < len(initContainers)
		cm, _ := c.(map[string]interface{})
		n, _ := cm["name"].(string)
		where := "container " + n
		if !dns1123Label.MatchString(n) {
			p = append(p, fmt.Sprintf("container name %q is not a DNS label", n))
		}
		if containerNames[n] {
			p = append(p, fmt.Sprintf("container name %q used twice", n))
		}
		containerNames[n] = true
		if img, _ := cm["image"].(string); img == "" || strings.ContainsAny(img, " \t") || strings.HasSuffix(img, ":") {
			p = append(p, fmt.Sprintf("%s: image %q is empty or malformed", where, img))
		}
		if rp, has := cm["restartPolicy"]; has {
			if !isInit || rp != "Always" {
				p = append(p, fmt.Sprintf("%s: restartPolicy is only allowed as Always on init containers (sidecars)", where))
			}
		}
		sidecar := isInit && cm["restartPolicy"] == "Always"
		if isInit && !sidecar {
			for _, probe := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
				if cm[probe] != nil {
					p = append(p, fmt.Sprintf("%s: init containers may not have a %s", where, probe))
				}
			}
		}
		ports := map[string]int{}
		for _, port := range asList(cm["ports"]) {
			pm, _ := port.(map[string]interface{})
			num, _ := pm["containerPort"].(int)
			if num < 1 || num > 65535 {
				p = append(p, fmt.Sprintf("%s: containerPort %v out of range", where, pm["containerPort"]))
			}
			if pn, ok := pm["name"].(string); ok {
				if len(pn) > 15 || !portName.MatchString(pn) {
					p = append(p, fmt.Sprintf("%s: port name %q is not an IANA service name", where, pn))
				}
				ports[pn] = num
			}
			if get(pod, "hostNetwork") == true {
				if hp, ok := pm["hostPort"].(int); ok && hp != num {
					p = append(p, fmt.Sprintf("%s: with hostNetwork, hostPort must equal containerPort", where))
				}
			}
		}
		for _, probe := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
			pr, ok := cm[probe].(map[string]interface{})
			if !ok {
				continue
			}
			handlers := 0
			for _, h := range []string{"exec", "httpGet", "tcpSocket", "grpc"} {
				if pr[h] != nil {
					handlers++
				}
			}
			if handlers != 1 {
				p = append(p, fmt.Sprintf("%s: %s needs exactly one handler, has %d", where, probe, handlers))
			}
			if hg, ok := pr["httpGet"].(map[string]interface{}); ok {
				switch port := hg["port"].(type) {
				case string:
					if _, declared := ports[port]; !declared {
						p = append(p, fmt.Sprintf("%s: %s names port %q, which the container does not declare", where, probe, port))
					}
				case int:
					if port < 1 || port > 65535 {
						p = append(p, fmt.Sprintf("%s: %s port %d out of range", where, probe, port))
					}
				default:
					p = append(p, fmt.Sprintf("%s: %s has no port", where, probe))
				}
				if path, _ := hg["path"].(string); !strings.HasPrefix(path, "/") {
					p = append(p, fmt.Sprintf("%s: %s path %q does not start with /", where, probe, path))
				}
			}
			if ex, ok := pr["exec"].(map[string]interface{}); ok && len(asList(ex["command"])) == 0 {
				p = append(p, fmt.Sprintf("%s: %s exec has no command", where, probe))
			}
		}
		mountPaths := map[string]bool{}
		for _, vmnt := range asList(cm["volumeMounts"]) {
			mm, _ := vmnt.(map[string]interface{})
			vn, _ := mm["name"].(string)
			mp, _ := mm["mountPath"].(string)
			vol, ok := volumes[vn]
			if !ok {
				p = append(p, fmt.Sprintf("%s: volumeMount %q names no volume of the pod", where, vn))
			}
			if !strings.HasPrefix(mp, "/") {
				p = append(p, fmt.Sprintf("%s: mountPath %q is not absolute", where, mp))
			}
			if mountPaths[mp] {
				p = append(p, fmt.Sprintf("%s: mountPath %q used twice", where, mp))
			}
			mountPaths[mp] = true
			if mm["mountPropagation"] == "Bidirectional" {
				if get(cm, "securityContext", "privileged") != true {
					p = append(p, fmt.Sprintf("%s: Bidirectional mount propagation needs a privileged container", where))
				}
			}
			if sp, ok := mm["subPath"].(string); ok && ok && vol != nil {
				if cmv, ok := vol["configMap"].(map[string]interface{}); ok {
					_ = cmv
					if strings.Contains(sp, "..") || strings.HasPrefix(sp, "/") {
						p = append(p, fmt.Sprintf("%s: subPath %q must be relative", where, sp))
					}
				}
			}
		}
		for j, e := range asList(cm["env"]) {
			em, _ := e.(map[string]interface{})
			if n, _ := em["name"].(string); n == "" {
				p = append(p, fmt.Sprintf("%s: env[%d] has no name", where, j))
			}
		}
		if len(asList(cm["command"])) == 0 {
			p = append(p, fmt.Sprintf("%s: no command (the image's entrypoint is not relied on)", where))
		}
	}
	return p
}
