#include "rafs/builder/tree.h"

#include <algorithm>
#include <unordered_map>

namespace rfs::rafs::builder {
namespace {

bool NameLess(const std::unique_ptr<Node>& a, const std::string& b) { return a->name < b; }

}  // namespace

Node* Node::FindChild(const std::string& child) const {
  auto it = std::lower_bound(children.begin(), children.end(), child, NameLess);
  if (it == children.end() || (*it)->name != child) return nullptr;
  return it->get();
}

Node* Node::AddChild(std::unique_ptr<Node> child) {
  child->parent = this;
  auto it = std::lower_bound(children.begin(), children.end(), child->name, NameLess);
  return children.insert(it, std::move(child))->get();
}

std::unique_ptr<Node> Node::RemoveChild(const std::string& child) {
  auto it = std::lower_bound(children.begin(), children.end(), child, NameLess);
  if (it == children.end() || (*it)->name != child) return nullptr;
  std::unique_ptr<Node> out = std::move(*it);
  children.erase(it);
  out->parent = nullptr;
  return out;
}

std::string Node::Path() const {
  if (parent == nullptr) return "/";
  std::string p = parent->Path();
  if (p != "/") p += "/";
  return p + name;
}

void VisitInSequenceOrder(Node* root, const std::function<void(Node*)>& fn) {
  fn(root);
  // Iterative: a stack of directories whose children are to be numbered.
  std::vector<Node*> stack{root};
  while (!stack.empty()) {
    Node* dir = stack.back();
    stack.pop_back();
    for (auto& c : dir->children) fn(c.get());
    for (auto it = dir->children.rbegin(); it != dir->children.rend(); ++it) {
      if ((*it)->is_dir()) stack.push_back(it->get());
    }
  }
}

void FinalizeTree(Node* root) {
  // Sort (sources may append unsorted).
  std::vector<Node*> dirs{root};
  while (!dirs.empty()) {
    Node* d = dirs.back();
    dirs.pop_back();
    std::sort(d->children.begin(), d->children.end(),
              [](const std::unique_ptr<Node>& a, const std::unique_ptr<Node>& b) {
                return a->name < b->name;
              });
    for (auto& c : d->children) {
      c->parent = d;
      if (c->is_dir()) dirs.push_back(c.get());
    }
  }
  // Links named by the source (tar hard links) become group keys first.
  uint64_t next_key = uint64_t{1} << 63;
  VisitInSequenceOrder(root, [&](Node* n) {
    if (n->link_to == nullptr) return;
    Node* target = n->link_to;
    while (target->link_to != nullptr && target->link_to != target) target = target->link_to;
    if (target->link_key == 0) target->link_key = next_key++;
    n->link_key = target->link_key;
  });
  VisitInSequenceOrder(root, [&](Node* n) { n->link_to = nullptr; });
  std::unordered_map<uint64_t, Node*> first;
  VisitInSequenceOrder(root, [&](Node* n) {
    n->link_count = 1;
    if (!n->is_reg() || n->link_key == 0) return;
    auto [it, inserted] = first.emplace(n->link_key, n);
    if (!inserted) {
      n->link_to = it->second;
      it->second->link_count++;
    }
  });
}

}  // namespace rfs::rafs::builder
