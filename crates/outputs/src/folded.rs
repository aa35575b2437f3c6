//! Folded stacks (`frame;frame;leaf count`, root first) and the SVG flame
//! graph rendered from them by inferno.
//!
//! Both go through a trie of what the lines show (labels, not frames: two
//! frames with one label, e.g. under `--nolineno`, are one node), built
//! once per distinct stack and root-frame prefix, so a line's text is built
//! at most once and shared prefixes not at all. The flame graph is fed
//! only the nodes inferno would draw (see [`write_flamegraph`]).

use std::io::Write;

use pyrometer_profile::{Profile, StackId, StrId, ThreadKey};
use pyrometer_sampler::ThreadState;

use crate::html::FxMap;
use crate::{frame_label, sanitize_frame_text, StackOptions};

/// The trie of folded lines: node 0 is the (unshown) root.
struct LineTrie {
    parent: Vec<u32>,
    label: Vec<u32>,
    own: Vec<u64>,
    children: FxMap<(u32, u32), u32>,
    labels: Vec<String>,
    label_ids: FxMap<String, u32>,
}

impl LineTrie {
    fn new() -> Self {
        LineTrie {
            parent: vec![u32::MAX],
            label: vec![u32::MAX],
            own: vec![0],
            children: FxMap::default(),
            labels: Vec::new(),
            label_ids: FxMap::default(),
        }
    }

    fn intern(&mut self, s: String) -> u32 {
        if let Some(&id) = self.label_ids.get(&s) {
            return id;
        }
        let id = self.labels.len() as u32;
        self.labels.push(s.clone());
        self.label_ids.insert(s, id);
        id
    }

    /// The child of `parent` with `label`; children are always created
    /// after their parents (one backward pass sums totals).
    fn child(&mut self, parent: u32, label: u32) -> u32 {
        if let Some(&c) = self.children.get(&(parent, label)) {
            return c;
        }
        let id = self.parent.len() as u32;
        self.parent.push(parent);
        self.label.push(label);
        self.own.push(0);
        self.children.insert((parent, label), id);
        id
    }

    /// Every node's samples plus its descendants'.
    fn totals(&self) -> Vec<u64> {
        let mut total = self.own.clone();
        for i in (1..total.len()).rev() {
            let p = self.parent[i] as usize;
            total[p] += total[i];
        }
        total
    }
}

/// The trie of the lines the options show.
fn line_trie(profile: &Profile, opts: &StackOptions) -> LineTrie {
    // Sum by what the lines show first (states, categories and, unless
    // asked for, threads, processes and endpoints are not shown).
    type LineKey = (Option<StrId>, Option<i32>, Option<ThreadKey>, StackId);
    let mut by_key: FxMap<LineKey, u64> = FxMap::default();
    for (key, count) in profile.counts_unordered() {
        if key.state == ThreadState::Idle && !opts.include_idle {
            continue;
        }
        // A thread running no Python code has nothing to show.
        let Some(stack) = key.stack else { continue };
        let k = (
            key.endpoint.filter(|_| opts.endpoints),
            opts.processes.then(|| profile.thread(key.thread).pid),
            opts.threads.then_some(key.thread),
            stack,
        );
        *by_key.entry(k).or_insert(0) += count;
    }
    let mut trie = LineTrie::new();
    // (endpoint, pid, thread) → the node of their root frames.
    type Prefix = (Option<StrId>, Option<i32>, Option<ThreadKey>);
    let mut prefixes: FxMap<Prefix, u32> = FxMap::default();
    // FrameId → label id.
    let mut frame_labels: Vec<u32> = Vec::new();
    // (prefix node, stack) → node.
    let mut memo: FxMap<(u32, StackId), u32> = FxMap::default();
    let mut pending: Vec<StackId> = Vec::new();
    for ((endpoint, pid, thread, stack), count) in by_key {
        let prefix = match prefixes.get(&(endpoint, pid, thread)) {
            Some(&p) => p,
            None => {
                let mut node = 0;
                if opts.endpoints {
                    let e = endpoint.map(|e| profile.str(e)).unwrap_or("none");
                    let l = trie.intern(sanitize_frame_text(&format!("endpoint ({e})")));
                    node = trie.child(node, l);
                }
                if let Some(pid) = pid {
                    let cmd = profile.process_cmdline(pid).unwrap_or("");
                    // Flame graphs cut long labels: keep the PID and the
                    // start of the command line readable.
                    let short: String = if cmd.chars().count() > 80 {
                        cmd.chars().take(77).chain("...".chars()).collect()
                    } else {
                        cmd.to_string()
                    };
                    let l = trie.intern(sanitize_frame_text(&format!("process {pid}:\"{short}\"")));
                    node = trie.child(node, l);
                }
                if let Some(t) = thread {
                    let l = trie.intern(sanitize_frame_text(&format!(
                        "thread ({})",
                        profile.thread(t).label()
                    )));
                    node = trie.child(node, l);
                }
                prefixes.insert((endpoint, pid, thread), node);
                node
            }
        };
        // Up the stack to the first node already placed under this
        // prefix, then down again creating the rest (iterative: stacks may
        // be thousands of frames deep).
        pending.clear();
        let mut base = prefix;
        let mut cur = Some(stack);
        while let Some(s) = cur {
            if let Some(&n) = memo.get(&(prefix, s)) {
                base = n;
                break;
            }
            pending.push(s);
            cur = profile.stack(s).parent;
        }
        for &s in pending.iter().rev() {
            let frame = profile.stack(s).frame;
            let fi = frame.0 as usize;
            if fi >= frame_labels.len() {
                frame_labels.resize(fi + 1, u32::MAX);
            }
            if frame_labels[fi] == u32::MAX {
                frame_labels[fi] = trie.intern(sanitize_frame_text(&frame_label(
                    profile,
                    profile.frame(frame),
                    opts,
                )));
            }
            base = trie.child(base, frame_labels[fi]);
            memo.insert((prefix, s), base);
        }
        trie.own[base as usize] += count;
    }
    trie
}

/// Visit the trie's lines in sorted order of their text: (line without
/// the count, count). A node whose `keep` is false is not shown: its
/// samples are counted on its parent's line instead. Returns false if the
/// labels cannot be visited in text order (a label that is a proper prefix
/// of a sibling's: rare target strings), having visited nothing.
fn visit_lines(trie: &LineTrie, keep: &[bool], mut visit: impl FnMut(&str, u64)) -> bool {
    let n = trie.parent.len();
    // Rank labels by their text: children in rank order are in text order.
    let mut by_text: Vec<u32> = (0..trie.labels.len() as u32).collect();
    by_text.sort_unstable_by(|a, b| trie.labels[*a as usize].cmp(&trie.labels[*b as usize]));
    let mut rank = vec![0u32; trie.labels.len()];
    for (r, l) in by_text.iter().enumerate() {
        rank[*l as usize] = r as u32;
    }
    // Pruned children's samples go to their (kept) parent's line.
    let mut count = trie.own.clone();
    let totals = trie.totals();
    for i in 1..n {
        let p = trie.parent[i] as usize;
        if !keep[i] && keep[p] {
            count[p] += totals[i];
        }
    }
    // Children of each node, in label order: nodes sorted by (parent, rank).
    let mut order: Vec<(u32, u32, u32)> = (1..n as u32)
        .filter(|&i| keep[i as usize])
        .map(|i| {
            (
                trie.parent[i as usize],
                rank[trie.label[i as usize] as usize],
                i,
            )
        })
        .collect();
    order.sort_unstable();
    // Siblings sorted by text: if one is a proper prefix of the next, text
    // order would interleave their subtrees.
    for w in order.windows(2) {
        if w[0].0 == w[1].0 {
            let a = &trie.labels[trie.label[w[0].2 as usize] as usize];
            let b = &trie.labels[trie.label[w[1].2 as usize] as usize];
            if b.len() > a.len() && b.starts_with(a.as_str()) {
                return false;
            }
        }
    }
    let mut first_child = vec![u32::MAX; n];
    let mut next_sibling = vec![u32::MAX; n];
    for &(p, _, i) in order.iter().rev() {
        next_sibling[i as usize] = first_child[p as usize];
        first_child[p as usize] = i;
    }
    // Depth first, a node's own line before its children's ("a 1" sorts
    // before "a;b 1").
    let mut path = String::new();
    let mut stack: Vec<(u32, usize)> = Vec::new();
    let mut c = first_child[0];
    while c != u32::MAX {
        stack.push((c, 0));
        c = next_sibling[c as usize];
    }
    stack.reverse();
    while let Some((node, len)) = stack.pop() {
        path.truncate(len);
        if len > 0 {
            path.push(';');
        }
        path.push_str(&trie.labels[trie.label[node as usize] as usize]);
        let own = count[node as usize];
        if own > 0 {
            visit(&path, own);
        }
        let here = path.len();
        let start = stack.len();
        let mut c = first_child[node as usize];
        while c != u32::MAX {
            stack.push((c, here));
            c = next_sibling[c as usize];
        }
        stack[start..].reverse();
    }
    true
}

/// Every line, in text order.
fn sorted_lines(trie: &LineTrie, keep: &[bool]) -> Vec<(String, u64)> {
    let mut lines = Vec::new();
    if !visit_lines(trie, keep, |l, c| lines.push((l.to_string(), c))) {
        // Labels that are prefixes of their siblings': sort the texts.
        let mut every = trie_lines_unordered(trie, keep);
        every.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        return every;
    }
    lines
}

/// Every line, in no particular order (pruned nodes counted as in
/// [`visit_lines`]).
fn trie_lines_unordered(trie: &LineTrie, keep: &[bool]) -> Vec<(String, u64)> {
    let n = trie.parent.len();
    let totals = trie.totals();
    let mut count = trie.own.clone();
    for i in 1..n {
        let p = trie.parent[i] as usize;
        if !keep[i] && keep[p] {
            count[p] += totals[i];
        }
    }
    let mut text: Vec<String> = vec![String::new(); n];
    let mut out = Vec::new();
    for i in 1..n {
        if !keep[i] {
            continue;
        }
        let p = trie.parent[i] as usize;
        let label = &trie.labels[trie.label[i] as usize];
        let t = if p == 0 {
            label.clone()
        } else {
            format!("{};{label}", text[p])
        };
        if count[i] > 0 {
            out.push((t.clone(), count[i]));
        }
        text[i] = t;
    }
    out
}

/// Folded lines, merged and sorted.
pub fn folded_lines(profile: &Profile, opts: &StackOptions) -> Vec<String> {
    let trie = line_trie(profile, opts);
    let keep = vec![true; trie.parent.len()];
    sorted_lines(&trie, &keep)
        .into_iter()
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect()
}

/// Write folded stacks.
pub fn write_folded(
    profile: &Profile,
    opts: &StackOptions,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let trie = line_trie(profile, opts);
    let keep = vec![true; trie.parent.len()];
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut result = Ok(());
    let streamed = visit_lines(&trie, &keep, |line, count| {
        if result.is_ok() {
            result = writeln!(out, "{line} {count}");
        }
    });
    result?;
    if !streamed {
        for (line, count) in sorted_lines(&trie, &keep) {
            writeln!(out, "{line} {count}")?;
        }
    }
    out.flush()
}

/// Write an interactive SVG flame graph.
///
/// inferno leaves out frames narrower than `min_width` percent of the
/// total, and everything under them; here what is under them is folded
/// into one line per such frame before inferno sees it, so that a profile
/// of hundreds of thousands of distinct lines renders in well under a
/// second, with every drawn frame where and as wide as before.
pub fn write_flamegraph(
    profile: &Profile,
    opts: &StackOptions,
    title: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut options = inferno::flamegraph::Options::default();
    // The title carries the target's command line.
    options.title = crate::sanitize_text(title);
    options.count_name = "samples".to_string();
    options.direction = inferno::flamegraph::Direction::Inverted;
    let trie = line_trie(profile, opts);
    let totals = trie.totals();
    // inferno's rule: a frame of fewer than min_width % of the samples
    // is not drawn, nor anything under it.
    let min_samples = options.min_width * totals[0] as f64 / 100.0;
    let mut keep = vec![true; trie.parent.len()];
    for i in 1..trie.parent.len() {
        let p = trie.parent[i] as usize;
        // A frame inferno draws keeps its children as lines; a narrow
        // one (not drawn) is one line holding its whole subtree, so it
        // still takes its place among its siblings and every drawn frame
        // keeps its position and width.
        keep[i] = p == 0 || (keep[p] && totals[p] as f64 >= min_samples);
    }
    let lines: Vec<String> = sorted_lines(&trie, &keep)
        .into_iter()
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect();
    if lines.is_empty() {
        // inferno refuses an empty profile; say so in a valid SVG instead.
        return write!(
            out,
            concat!(
                r#"<?xml version="1.0" standalone="no"?>"#,
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="600" height="60">"#,
                r#"<text x="10" y="30">No samples were collected.</text></svg>"#
            )
        );
    }
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(|s| s.as_str()), out)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyrometer_profile::{FrameInfo, ThreadInfo};

    fn profile(stacks: &[(&[&str], u64)]) -> Profile {
        let mut p = Profile::new();
        let t = p.thread_key(ThreadInfo {
            pid: 1,
            thread_id: 1,
            native_id: Some(1),
            name: None,
        });
        for (names, count) in stacks {
            let frames: Vec<FrameInfo> = names
                .iter()
                .map(|n| FrameInfo {
                    name: p.intern(n),
                    filename: p.intern("a.py"),
                    line: 0,
                    first_line: 0,
                })
                .collect();
            p.add_stack(&frames, t, ThreadState::Python, *count);
        }
        p
    }

    /// The old way: every line's text built, then sorted.
    fn reference(p: &Profile, opts: &StackOptions) -> Vec<String> {
        let mut m: std::collections::BTreeMap<String, u64> = Default::default();
        for (k, c) in p.counts() {
            let text: Vec<String> = p
                .stack_frames(k.stack)
                .iter()
                .map(|f| sanitize_frame_text(&frame_label(p, p.frame(*f), opts)))
                .collect();
            if !text.is_empty() {
                *m.entry(text.join(";")).or_insert(0) += c;
            }
        }
        m.into_iter().map(|(l, c)| format!("{l} {c}")).collect()
    }

    #[test]
    fn lines_are_sorted_and_merged_even_when_labels_prefix_each_other() {
        let opts = StackOptions::new();
        for stacks in [
            &[
                (&["main", "f"][..], 3),
                (&["main"][..], 1),
                (&["main", "g"][..], 2),
            ][..],
            // "b" is a prefix of "b-x" and "b (" : text order interleaves.
            &[
                (&["a", "b", "c"][..], 1),
                (&["a", "b-x"][..], 2),
                (&["a", "b"][..], 4),
                (&["a", "b (x"][..], 5),
                (&["z"][..], 6),
            ][..],
        ] {
            let p = profile(stacks);
            let want = reference(&p, &opts);
            assert_eq!(folded_lines(&p, &opts), want);
            let mut written = Vec::new();
            write_folded(&p, &opts, &mut written).unwrap();
            let want_text: String = want.iter().map(|l| format!("{l}\n")).collect();
            assert_eq!(String::from_utf8(written).unwrap(), want_text);
        }
    }

    /// An SVG without its random colours.
    fn shape(svg: &[u8]) -> String {
        let svg = String::from_utf8_lossy(svg);
        let mut out = String::new();
        let mut rest = svg.as_ref();
        while let Some(i) = rest.find("fill=\"rgb(") {
            out.push_str(&rest[..i]);
            let after = &rest[i + "fill=\"rgb(".len()..];
            rest = after.find('"').map_or("", |j| &after[j + 1..]);
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn the_flame_graph_is_the_one_inferno_draws_from_every_line() {
        // Wide and narrow frames interleaved among siblings, narrow ones
        // with deep subtrees: 145_000 samples or so, 0.01 % = 14.
        let mut stacks: Vec<(Vec<String>, u64)> = Vec::new();
        for i in 0..200u64 {
            let weight = if i % 7 == 0 { 5000 } else { 1 };
            stacks.push((
                vec!["main".into(), format!("f{i:03}"), "leaf".into()],
                weight,
            ));
            stacks.push((
                vec![
                    "main".into(),
                    format!("f{i:03}"),
                    format!("g{i}"),
                    "deep".into(),
                ],
                1 + i % 2,
            ));
        }
        let names: Vec<(Vec<&str>, u64)> = stacks
            .iter()
            .map(|(s, c)| (s.iter().map(String::as_str).collect(), *c))
            .collect();
        let list: Vec<(&[&str], u64)> = names.iter().map(|(s, c)| (s.as_slice(), *c)).collect();
        let p = profile(&list);
        let opts = StackOptions::new();
        let mut pruned = Vec::new();
        write_flamegraph(&p, &opts, "t", &mut pruned).unwrap();
        let mut options = inferno::flamegraph::Options::default();
        options.title = "t".into();
        options.count_name = "samples".to_string();
        options.direction = inferno::flamegraph::Direction::Inverted;
        let every = folded_lines(&p, &opts);
        let mut full = Vec::new();
        inferno::flamegraph::from_lines(&mut options, every.iter().map(|s| s.as_str()), &mut full)
            .unwrap();
        assert_eq!(shape(&pruned), shape(&full));
        let svg = String::from_utf8(pruned).unwrap();
        // f000 has 5001 samples (drawn), f001 three (not drawn).
        assert!(
            svg.contains("f000 (a.py)") && !svg.contains("f001 (a.py)"),
            "nothing pruned"
        );
    }

    #[test]
    fn narrow_frames_are_counted_on_their_caller() {
        // 100_000 samples under main;big, 1 under main;tiny (under 0.01 %).
        let p = profile(&[
            (&["main", "big"], 100_000),
            (&["main", "tiny", "deeper"], 1),
        ]);
        let mut svg = Vec::new();
        write_flamegraph(&p, &StackOptions::new(), "t", &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("big (a.py)"));
        assert!(!svg.contains("tiny") && !svg.contains("deeper"));
        assert!(svg.contains("100,001 samples"), "the total is unchanged");
    }
}
