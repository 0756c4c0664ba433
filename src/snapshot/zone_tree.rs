//! The name tree of a zone (lower-case wire names): containment, parents,
//! wildcards, delegations, empty non-terminals and CNAME loops.

use rustc_hash::FxHashMap;

use crate::zone::{Node, WireName, rtype};

/// Whether `name` (lower-case wire) is at or below `apex`.
pub(super) fn in_zone(name: &[u8], apex: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        if &name[i..] == apex {
            return true;
        }
        i += 1 + name[i] as usize;
    }
    false
}

/// The node a name (lower-case wire, inside `apex`) is answered from: the
/// name itself, else the wildcard at its closest encloser (RFC 4592).
fn answering_node<'n>(
    nodes: &'n FxHashMap<WireName, Node>,
    name: &[u8],
    apex: &[u8],
) -> Option<(&'n WireName, &'n Node)> {
    if let Some(kv) = nodes.get_key_value(name) {
        return Some(kv);
    }
    let mut ce = parent(name);
    while !nodes.contains_key(ce) {
        if ce.len() <= apex.len() {
            return None;
        }
        ce = parent(ce);
    }
    let mut wild = b"\x01*".to_vec();
    wild.extend_from_slice(ce);
    nodes.get_key_value(wild.as_slice())
}

/// The CNAME chain from `start` when it comes back to `start` (a loop), as
/// the owners in order; None when it ends, leaves the zone, or joins a loop
/// that `start` is not part of (that loop's own records are reported).
pub(super) fn cname_cycle(
    nodes: &FxHashMap<WireName, Node>,
    apex: &[u8],
    start: &WireName,
) -> Option<Vec<WireName>> {
    let mut path = vec![start.clone()];
    let mut cur = nodes.get(start)?;
    for _ in 0..=nodes.len() {
        let target = cur.rrset(rtype::CNAME)?.target.as_deref()?;
        if !in_zone(target, apex) {
            return None;
        }
        let (key, node) = answering_node(nodes, target, apex)?;
        node.rrset(rtype::CNAME)?;
        if key == start {
            return Some(path);
        }
        if path.contains(key) {
            return None;
        }
        path.push(key.clone());
        cur = node;
    }
    None
}

/// Parent of a wire name (drop the first label).
fn parent(name: &[u8]) -> &[u8] {
    let l = name.first().copied().unwrap_or(0) as usize;
    if l == 0 { name } else { &name[1 + l..] }
}

pub(super) fn parent_is_cut(nodes: &FxHashMap<WireName, Node>, name: &[u8], apex: &[u8]) -> bool {
    let mut n = parent(name);
    while n.len() > apex.len() {
        if nodes.get(n).is_some_and(|x| x.delegation) {
            return true;
        }
        n = parent(n);
    }
    false
}

/// Every ancestor of a name, up to the apex, exists (RFC 4592 empty
/// non-terminals), so NXDOMAIN is only given for names that really have
/// nothing at or below them.
pub(super) fn add_empty_non_terminals(nodes: &mut FxHashMap<WireName, Node>, apex: &[u8]) {
    let names: Vec<WireName> = nodes.keys().cloned().collect();
    for n in names {
        let mut p: &[u8] = &n;
        while p.len() > apex.len() {
            p = parent(p);
            nodes.entry(Box::from(p)).or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::RrSet;

    fn w(name: &str) -> WireName {
        crate::zone::wire_name(&name.parse().unwrap())
    }

    fn cname(to: &str) -> Node {
        Node {
            rrsets: vec![RrSet {
                rtype: rtype::CNAME,
                ttl: 60,
                rdata: Vec::new(),
                target: Some(w(to)),
            }],
            ..Node::default()
        }
    }

    #[test]
    fn containment_and_parents() {
        let apex = w("example.com.");
        assert!(in_zone(&w("a.b.example.com."), &apex));
        assert!(in_zone(&apex, &apex));
        assert!(!in_zone(&w("example.net."), &apex));
        assert!(!in_zone(&w("badexample.com."), &apex), "labels, not bytes");
        assert_eq!(parent(&w("a.example.com.")), &apex[..]);
        assert_eq!(parent(&w(".")), &w(".")[..], "the root is its own parent");
    }

    #[test]
    fn empty_non_terminals_fill_up_to_the_apex() {
        let apex = w("example.com.");
        let mut nodes = FxHashMap::default();
        nodes.insert(w("a.b.c.example.com."), Node::default());
        add_empty_non_terminals(&mut nodes, &apex);
        for n in ["b.c.example.com.", "c.example.com.", "example.com."] {
            assert!(nodes.contains_key(&w(n)), "{n}");
        }
        assert_eq!(nodes.len(), 4);
    }

    #[test]
    fn cuts_above_a_name() {
        let apex = w("example.com.");
        let mut nodes = FxHashMap::default();
        nodes.insert(
            w("sub.example.com."),
            Node {
                delegation: true,
                ..Node::default()
            },
        );
        assert!(parent_is_cut(&nodes, &w("x.sub.example.com."), &apex));
        assert!(
            !parent_is_cut(&nodes, &w("sub.example.com."), &apex),
            "the cut itself"
        );
        assert!(!parent_is_cut(&nodes, &w("y.example.com."), &apex));
    }

    #[test]
    fn cname_loops_through_a_wildcard() {
        let apex = w("example.com.");
        let mut nodes = FxHashMap::default();
        nodes.insert(w("a.example.com."), cname("x.w.example.com."));
        nodes.insert(w("*.w.example.com."), cname("a.example.com."));
        nodes.insert(w("w.example.com."), Node::default());
        nodes.insert(w("ok.example.com."), cname("elsewhere.net."));
        let cycle = cname_cycle(&nodes, &apex, &w("a.example.com.")).expect("a loop");
        assert_eq!(cycle, vec![w("a.example.com."), w("*.w.example.com.")]);
        assert_eq!(cname_cycle(&nodes, &apex, &w("ok.example.com.")), None);
        // A chain that only joins the loop is not reported for its start.
        nodes.insert(w("in.example.com."), cname("a.example.com."));
        assert_eq!(cname_cycle(&nodes, &apex, &w("in.example.com.")), None);
    }
}
