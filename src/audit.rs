//! The audit log's hash chain: how a record's hash is computed, and how a stored log is checked
//! and, when it has been tampered with, what was done to which record. Pure: no SQL, no I/O.
//!
//! Every record carries `prev_hash`, the hash of the record before it ([`GENESIS`] for the
//! first), and `hash`, SHA-256 over a length-prefixed encoding of `prev_hash`, `seq`, `at` and
//! every text field ([`record_hash`]). Changing any of them, removing a record from the middle,
//! slipping one in or moving one therefore breaks a hash or a link somewhere.
//!
//! # How [`verify`] diagnoses
//!
//! It does not stop at the first broken link. It rebuilds the chain by following `prev_hash`
//! from [`GENESIS`], which gives every record the position the chain says it has, and compares
//! that with the `seq` it is stored under:
//!
//! - a record whose hash does not match its content at its chain position is
//!   [`Finding::Changed`];
//! - chain positions that no record holds are [`Finding::Deleted`], whether or not the records
//!   after them were renumbered to close the gap (the hash binds the original `seq`, so a
//!   renumbered record still says where it came from);
//! - a record the chain does not pass through, because the records around it link past it or a
//!   genuine record already holds its place, is [`Finding::Inserted`], again whether or not the
//!   records after it were renumbered to make room;
//! - records whose chain order disagrees with their `seq` order (two records' seqs swapped, or
//!   one record's `seq` rewritten) are [`Finding::Reordered`];
//! - a link broken although nothing is missing means one of the two records was rewritten and
//!   its hash recomputed: [`Finding::Unlinked`] names the later one (and [`Finding::Changed`]
//!   when a record lost both its links).
//!
//! Renumbering that an insertion or deletion explains is not reported again. Some tamperings at
//! the newest end look exactly alike, so there the right place is named but perhaps another
//! kind: swapping the last two records is the same data as moving a record chained onto the
//! newest one to just before it, and a forged record sharing a predecessor with the newest one,
//! sealed for the same position, is indistinguishable from the genuine one.
//!
//! # What a plain hash chain cannot detect
//!
//! - **Truncation of the tail.** Deleting the newest records leaves a shorter chain that is
//!   perfectly valid. (The store keeps the sequence counter apart, so the next record appended
//!   afterwards exposes the gap; until then nothing does.)
//! - **Recomputation.** The chain has no secret in it: anyone with write access to the table can
//!   rewrite a record and recompute every hash after it, or append forged records at the end,
//!   and the result verifies.
//!
//! That is why [`verify`] returns the number of records and the head hash: operators record
//! them somewhere the database's writers cannot reach (a ticket, a signed report, another
//! system). A later log that no longer holds that head at that position, or holds fewer records,
//! has been truncated or rewritten.

use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// The `prev_hash` of record 1: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Tags the encoding, so a hash of this version can never equal one of another layout.
const DOMAIN: &str = "tongban.audit.v1";

/// How far past the records before it a stretch of renumbered records is searched for its
/// original place: the longest run of deleted records recognised as such.
const SEARCH: i64 = 256;

/// A cap on hashes spent searching, so a log ruined throughout is still verified in bounded time.
const SEARCH_BUDGET: usize = 1 << 20;

/// What to record. Callers mask every text first: the log keeps no personal data in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who acted: `key:ID`, `staff:SUB`, `platform`, `system:ID`, `cli`.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

/// A stored record: the entry, where and when it was chained, and its hashes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// The entry this record holds.
    pub fn entry(&self) -> AuditEntry {
        AuditEntry {
            actor: self.actor.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            outcome: self.outcome.clone(),
            detail: self.detail.clone(),
        }
    }

    /// Whether `hash` is what this record's content gives when chained at `seq`.
    fn sealed_at(&self, seq: i64) -> bool {
        hash_parts(
            &self.prev_hash,
            seq,
            self.at,
            [
                &self.actor,
                &self.action,
                &self.target,
                &self.outcome,
                &self.detail,
            ],
        ) == self.hash
    }
}

/// The hash of a record chained after `prev_hash` as number `seq` at `at`: lower-case hex of
/// SHA-256 over a version tag, then each text as its byte length (u64, big-endian) and bytes,
/// and each number as i64 big-endian. The lengths make the encoding unambiguous: no two
/// different records encode alike, whatever their texts contain.
pub fn record_hash(prev_hash: &str, seq: i64, at: i64, entry: &AuditEntry) -> String {
    hash_parts(
        prev_hash,
        seq,
        at,
        [
            &entry.actor,
            &entry.action,
            &entry.target,
            &entry.outcome,
            &entry.detail,
        ],
    )
}

fn hash_parts(prev_hash: &str, seq: i64, at: i64, texts: [&str; 5]) -> String {
    fn text(hasher: &mut Sha256, value: &str) {
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value.as_bytes());
    }
    let mut hasher = Sha256::new();
    text(&mut hasher, DOMAIN);
    text(&mut hasher, prev_hash);
    hasher.update(seq.to_be_bytes());
    hasher.update(at.to_be_bytes());
    for value in texts {
        text(&mut hasher, value);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// How many records were examined.
    pub records: usize,
    /// The hash of the newest record of the chain that is intact ([`GENESIS`] when there is
    /// none): with `records`, the anchor to keep elsewhere.
    pub head: String,
    /// Every problem, in seq order; empty when the log is intact.
    pub findings: Vec<Finding>,
}

impl Verification {
    /// Whether nothing was found.
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty()
    }
}

/// One problem, naming the record by the seq it is stored under (for `Deleted`, the seqs the
/// missing records had).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The record's content (its `seq` included) or its hash was altered.
    Changed { seq: i64 },
    /// These records are missing: a gap, or a broken link where records were removed.
    Deleted { from_seq: i64, to_seq: i64 },
    /// A record the chain does not pass through: slipped in, the records after it perhaps
    /// renumbered to make room.
    Inserted { seq: i64 },
    /// A record whose place in the chain disagrees with its seq: moved, or swapped with another.
    Reordered { seq: i64 },
    /// The record does not link to the one before it, though none is missing: one of the two was
    /// rewritten and its hash recomputed.
    Unlinked { seq: i64 },
}

impl Finding {
    /// The seq it names first, for ordering.
    fn seq(&self) -> i64 {
        match self {
            Finding::Changed { seq }
            | Finding::Inserted { seq }
            | Finding::Reordered { seq }
            | Finding::Unlinked { seq } => *seq,
            Finding::Deleted { from_seq, .. } => *from_seq,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Changed { seq } => write!(
                f,
                "record {seq} was altered: its hash does not match its content"
            ),
            Finding::Deleted { from_seq, to_seq } if from_seq == to_seq => {
                write!(f, "record {from_seq} was deleted")
            }
            Finding::Deleted { from_seq, to_seq } => {
                write!(f, "records {from_seq} to {to_seq} were deleted")
            }
            Finding::Inserted { seq } => write!(
                f,
                "record {seq} was inserted: the chain does not pass through it"
            ),
            Finding::Reordered { seq } => write!(
                f,
                "record {seq} is out of order: the chain puts it elsewhere"
            ),
            Finding::Unlinked { seq } => write!(
                f,
                "record {seq} does not link to the record before it: one of the two was rewritten and its hash recomputed"
            ),
        }
    }
}

/// Checks a log and says what was done to it. `records` are the stored records, in seq order
/// (they are sorted again, so any order will do).
pub fn verify(records: &[AuditRecord]) -> Verification {
    let mut sorted: Vec<&AuditRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.seq);
    Chain::new(sorted).diagnose()
}

/// Where a record's `prev_hash` leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Genesis,
    Record(usize),
    /// To no record present (or into a loop, which is cut here).
    Missing,
}

/// The records (by index in seq order) with their links, as the diagnosis builds it up.
struct Chain<'a> {
    recs: Vec<&'a AuditRecord>,
    sealed_stored: Vec<bool>,
    parent: Vec<Link>,
    /// Who links to each record; records the chain skips are left out.
    kids: Vec<Vec<usize>>,
    height: Vec<usize>,
    /// The chain position of every record the chain passes through.
    pos: Vec<Option<i64>>,
    inserted: Vec<bool>,
    /// Records that start a stretch of the chain without a link from GENESIS or a record before.
    cut_roots: Vec<usize>,
    budget: std::cell::Cell<usize>,
}

impl<'a> Chain<'a> {
    fn new(recs: Vec<&'a AuditRecord>) -> Chain<'a> {
        let m = recs.len();
        let sealed_stored = recs.iter().map(|r| r.sealed_at(r.seq)).collect();
        let mut by_hash: HashMap<&str, usize> = HashMap::with_capacity(m);
        for (i, r) in recs.iter().enumerate() {
            by_hash.entry(r.hash.as_str()).or_insert(i);
        }
        let parent = recs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if r.prev_hash == GENESIS {
                    Link::Genesis
                } else {
                    match by_hash.get(r.prev_hash.as_str()) {
                        Some(&j) if j != i => Link::Record(j),
                        _ => Link::Missing,
                    }
                }
            })
            .collect();
        let mut chain = Chain {
            recs,
            sealed_stored,
            parent,
            kids: vec![Vec::new(); m],
            height: vec![0; m],
            pos: vec![None; m],
            inserted: vec![false; m],
            cut_roots: Vec::new(),
            budget: std::cell::Cell::new(SEARCH_BUDGET),
        };
        chain.cut_loops();
        chain
    }

    fn seq(&self, i: usize) -> i64 {
        self.recs[i].seq
    }

    fn sealed_at(&self, i: usize, seq: i64) -> bool {
        if seq == self.recs[i].seq {
            self.sealed_stored[i]
        } else {
            self.recs[i].sealed_at(seq)
        }
    }

    /// `prev_hash` values are plain text a writer can set, so links can go round in a loop.
    /// Each loop is cut at its lowest record, which then starts a stretch of its own.
    fn cut_loops(&mut self) {
        let m = self.recs.len();
        let mut state = vec![0u8; m];
        for start in 0..m {
            let mut path = Vec::new();
            let mut v = start;
            loop {
                match state[v] {
                    0 => {
                        state[v] = 1;
                        path.push(v);
                        match self.parent[v] {
                            Link::Record(p) => v = p,
                            _ => break,
                        }
                    }
                    1 => {
                        if let Some(at) = path.iter().position(|&x| x == v)
                            && let Some(&cut) = path[at..].iter().min()
                        {
                            self.parent[cut] = Link::Missing;
                        }
                        break;
                    }
                    _ => break,
                }
            }
            for v in path {
                state[v] = 2;
            }
        }
    }

    /// Who links to each record, and to GENESIS, leaving out records in `skip`.
    fn link_lists(&self, skip: &[bool]) -> (Vec<Vec<usize>>, Vec<usize>) {
        let mut kids = vec![Vec::new(); self.recs.len()];
        let mut first = Vec::new();
        for (i, link) in self.parent.iter().enumerate() {
            if skip[i] {
                continue;
            }
            match link {
                Link::Genesis => first.push(i),
                Link::Record(p) => kids[*p].push(i),
                Link::Missing => {}
            }
        }
        (kids, first)
    }

    /// The length of the longest run of links below each record.
    fn heights(&self, kids: &[Vec<usize>], skip: &[bool]) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.recs.len());
        let mut stack: Vec<usize> = (0..self.recs.len())
            .filter(|&i| !skip[i] && !matches!(self.parent[i], Link::Record(_)))
            .collect();
        while let Some(v) = stack.pop() {
            order.push(v);
            stack.extend(&kids[v]);
        }
        let mut height = vec![0; self.recs.len()];
        for &v in order.iter().rev() {
            height[v] = 1 + kids[v].iter().map(|&c| height[c]).max().unwrap_or(0);
        }
        height
    }

    /// Records the chain skips: a stretch in seq order that the record after it links past
    /// (that record's hash confirms it directly follows the one before the stretch, at that
    /// one's seq plus one), that nothing outside the stretch links to, and that does not hang
    /// off the record linking past it. Such a stretch was slipped in, with or without the
    /// records after it renumbered.
    fn skipped(&self, raw_kids: &[Vec<usize>], raw_height: &[usize]) -> Vec<bool> {
        let m = self.recs.len();
        let mut skipped = vec![false; m];
        for x in 0..m {
            let (start, before, before_seq) = match self.parent[x] {
                Link::Record(p) if p + 1 < x => (p + 1, Link::Record(p), self.seq(p)),
                Link::Genesis if x > 0 => (0, Link::Genesis, 0),
                _ => continue,
            };
            if !self.sealed_at(x, before_seq.saturating_add(1)) {
                continue;
            }
            let run = start..x;
            let in_run = |i: usize| run.contains(&i);
            let fits = run.clone().all(|r| {
                let parent = self.parent[r];
                raw_kids[r].iter().all(|&c| in_run(c))
                    && parent != Link::Record(x)
                    && (run.len() == 1
                        || match parent {
                            Link::Record(q) => in_run(q) || parent == before,
                            Link::Genesis => before == Link::Genesis,
                            Link::Missing => true,
                        })
                    && (parent != before || raw_height[x] >= raw_height[r])
            });
            if fits {
                for r in run {
                    skipped[r] = true;
                }
            }
        }
        skipped
    }

    /// Picks which of the records linking to one record continues the chain: one whose hash
    /// confirms the expected position, then the longest, then the earliest.
    fn choose(&self, candidates: &[usize], expected: Option<i64>) -> usize {
        candidates
            .iter()
            .copied()
            .max_by_key(|&k| {
                let sealed = match expected {
                    Some(p) => self.sealed_at(k, p),
                    None => self.sealed_stored[k],
                };
                (sealed, self.height[k], Reverse(k))
            })
            .unwrap_or(candidates[0])
    }

    /// Follows links from `start` (chosen among others that lost to it at a fork), and returns
    /// the records in chain order; records that lost at forks go to `losers` with their parent.
    fn walk(
        &self,
        start: usize,
        start_pos: Option<i64>,
        losers: &mut BTreeSet<(usize, Option<usize>)>,
    ) -> Vec<usize> {
        let mut nodes = vec![start];
        let mut current = start;
        let mut expected = start_pos.map(|p| p.saturating_add(1));
        while !self.kids[current].is_empty() {
            let best = self.choose(&self.kids[current], expected);
            for &k in &self.kids[current] {
                if k != best {
                    losers.insert((k, Some(current)));
                }
            }
            nodes.push(best);
            current = best;
            expected = expected.map(|p| self.next_pos(best, p).saturating_add(1));
        }
        nodes
    }

    /// The position of a record linked right after the one at `expected - 1`: `expected`,
    /// unless its hash confirms a later stored seq instead. That is a record appended after the
    /// newest ones were deleted: it links to the newest left, and its seq leaves the gap.
    fn next_pos(&self, i: usize, expected: i64) -> i64 {
        if !self.sealed_at(i, expected) && self.sealed_stored[i] && self.seq(i) > expected {
            self.seq(i)
        } else {
            expected
        }
    }

    /// The chain position of the first record of a stretch that does not hang off GENESIS: from
    /// any record in it whose hash confirms its stored seq; else the first place after the
    /// records stored before it where its hash confirms it (records deleted, the rest
    /// renumbered); else right after them.
    fn base_of(&self, nodes: &[usize]) -> i64 {
        for (t, &v) in nodes.iter().enumerate() {
            if self.sealed_stored[v] {
                return self.seq(v).saturating_sub(t as i64);
            }
        }
        let after = (0..nodes[0]).rev().find_map(|i| self.pos[i]).unwrap_or(0);
        for d in 0..=SEARCH {
            for (t, &v) in nodes.iter().take(2).enumerate() {
                let left = self.budget.get();
                if left == 0 {
                    return after.saturating_add(1);
                }
                self.budget.set(left - 1);
                let at = after.saturating_add(1 + d + t as i64);
                if self.recs[v].sealed_at(at) {
                    return after.saturating_add(1 + d);
                }
            }
        }
        after.saturating_add(1)
    }

    fn place(&mut self, nodes: &[usize], base: i64) {
        let mut at = base;
        for &v in nodes {
            at = self.next_pos(v, at);
            self.pos[v] = Some(at);
            at = at.saturating_add(1);
        }
    }

    fn insert_subtree(&mut self, root: usize) {
        let mut stack = vec![root];
        while let Some(v) = stack.pop() {
            self.inserted[v] = true;
            stack.extend(self.kids[v].iter().copied());
        }
    }

    /// Rebuilds the chain: positions for the records it passes through, `inserted` for the rest.
    fn build(&mut self) {
        let m = self.recs.len();
        let (raw_kids, _) = self.link_lists(&vec![false; m]);
        let raw_height = self.heights(&raw_kids, &vec![false; m]);
        let skipped = self.skipped(&raw_kids, &raw_height);
        let (kids, first) = self.link_lists(&skipped);
        self.height = self.heights(&kids, &skipped);
        self.kids = kids;
        self.inserted = skipped.clone();

        let mut losers: BTreeSet<(usize, Option<usize>)> = BTreeSet::new();
        if !first.is_empty() {
            let start = self.choose(&first, Some(1));
            for &k in &first {
                if k != start {
                    losers.insert((k, None));
                }
            }
            let nodes = self.walk(start, Some(self.next_pos(start, 1)), &mut losers);
            self.place(&nodes, 1);
        }
        // Stretches whose first record links to no record present, taken with those that lost
        // at a fork, earliest first.
        for (i, link) in self.parent.iter().enumerate() {
            if !skipped[i] && *link == Link::Missing {
                losers.insert((i, None));
            }
        }
        while let Some((root, parent)) = losers.pop_first() {
            if self.parent[root] != Link::Missing {
                let parent_pos = match parent {
                    Some(p) => self.pos[p],
                    None => Some(0),
                };
                // A rival for a place the chain already fills with a record confirmed there.
                if let Some(p) = parent_pos
                    && self.sealed_at(root, p.saturating_add(1))
                {
                    self.insert_subtree(root);
                    continue;
                }
            }
            let nodes = self.walk(root, None, &mut losers);
            let base = self.base_of(&nodes);
            self.place(&nodes, base);
            self.cut_roots.push(root);
        }
    }

    fn diagnose(mut self) -> Verification {
        let m = self.recs.len();
        self.build();
        let mut findings = Vec::new();

        let chain: Vec<usize> = (0..m)
            .filter(|&i| !self.inserted[i] && self.pos[i].is_some())
            .collect();
        let pos = |i: usize| self.pos[i].unwrap_or(0);
        let sealed_here: Vec<bool> = (0..m)
            .map(|i| self.pos[i].is_some_and(|p| self.sealed_at(i, p)))
            .collect();
        let mut changed = vec![false; m];
        for &i in &chain {
            changed[i] = !sealed_here[i];
        }
        for i in 0..m {
            if self.inserted[i] {
                findings.push(Finding::Inserted { seq: self.seq(i) });
            }
        }

        // Positions no record holds.
        let mut held: Vec<i64> = chain.iter().map(|&i| pos(i)).filter(|&p| p >= 1).collect();
        held.sort_unstable();
        held.dedup();
        let mut next = 1i64;
        for &p in &held {
            if p > next {
                findings.push(Finding::Deleted {
                    from_seq: next,
                    to_seq: p - 1,
                });
            }
            next = next.max(p.saturating_add(1));
        }
        let missing_before = |p: i64| -> i64 {
            let holding = held.partition_point(|&h| h < p) as i64;
            (p.saturating_sub(1)).saturating_sub(holding).max(0)
        };
        let is_missing = |p: i64| p >= 1 && held.binary_search(&p).is_err();

        // Links broken with nothing missing.
        let mut at_pos: HashMap<i64, usize> = HashMap::new();
        for &i in &chain {
            at_pos.entry(pos(i)).or_insert(i);
        }
        let mut unexplained: Vec<(i64, usize)> = self
            .cut_roots
            .iter()
            .copied()
            .filter(|&r| !self.inserted[r] && !changed[r])
            .filter(|&r| {
                let before = pos(r).saturating_sub(1);
                !(is_missing(before) || at_pos.get(&before).is_some_and(|&b| changed[b]))
            })
            .map(|r| (pos(r), r))
            .collect();
        unexplained.sort_unstable();
        let mut off_chain = self.inserted.clone();
        let mut k = 0;
        while k < unexplained.len() {
            let (p, r) = unexplained[k];
            if k + 1 < unexplained.len() && unexplained[k + 1].0 == p.saturating_add(1) {
                // Both its links broken: the record itself was rewritten.
                changed[r] = true;
                k += 2;
                continue;
            }
            if matches!(self.parent[r], Link::Record(_)) {
                // It links to a record whose place after that one a genuine record already
                // holds, and hashes as a later one: a branch grafted on, not a rewrite.
                off_chain[r] = true;
                findings.push(Finding::Inserted { seq: self.seq(r) });
            } else {
                findings.push(Finding::Unlinked { seq: self.seq(r) });
            }
            k += 1;
        }
        let chain: Vec<usize> = chain.into_iter().filter(|&i| !off_chain[i]).collect();

        // Chain order against seq order.
        let mut by_pos = chain.clone();
        by_pos.sort_by_key(|&i| (pos(i), self.seq(i)));
        let weights: Vec<u64> = by_pos
            .iter()
            .map(|&i| if self.seq(i) == pos(i) { 2 } else { 1 })
            .collect();
        let seqs: Vec<i64> = by_pos.iter().map(|&i| self.seq(i)).collect();
        let keep = heaviest_increasing(&seqs, &weights);
        let mut reordered = vec![false; m];
        for (t, &i) in by_pos.iter().enumerate() {
            if keep[t] {
                continue;
            }
            reordered[i] = true;
            // Its swap partner: stored where this one belongs, belonging where this one is.
            if let Ok(q) = self.recs.binary_search_by_key(&pos(i), |r| r.seq)
                && !off_chain[q]
                && self.pos[q] == Some(self.seq(i))
            {
                reordered[q] = true;
            }
        }
        for &i in &chain {
            if reordered[i] {
                findings.push(Finding::Reordered { seq: self.seq(i) });
            }
        }

        // A seq further from the chain position than insertions and deletions before it explain.
        let mut inserted_before = vec![0i64; m + 1];
        for i in 0..m {
            inserted_before[i + 1] = inserted_before[i] + i64::from(off_chain[i]);
        }
        for &i in &chain {
            if reordered[i] || changed[i] {
                continue;
            }
            let offset = self.seq(i).saturating_sub(pos(i));
            if offset > inserted_before[i] || offset < -missing_before(pos(i)) {
                changed[i] = true;
            }
        }
        for &i in &chain {
            if changed[i] {
                findings.push(Finding::Changed { seq: self.seq(i) });
            }
        }

        findings.sort_by_key(|f| (f.seq(), kind_order(f)));
        findings.dedup();
        let head = by_pos
            .iter()
            .rev()
            .find(|&&i| sealed_here[i])
            .map(|&i| self.recs[i].hash.clone())
            .unwrap_or_else(|| GENESIS.to_string());
        Verification {
            records: m,
            head,
            findings,
        }
    }
}

fn kind_order(f: &Finding) -> u8 {
    match f {
        Finding::Deleted { .. } => 0,
        Finding::Inserted { .. } => 1,
        Finding::Reordered { .. } => 2,
        Finding::Unlinked { .. } => 3,
        Finding::Changed { .. } => 4,
    }
}

/// Which elements form the heaviest strictly increasing subsequence of `values`: the records
/// that keep their order, the rest having moved. O(n log n) with a Fenwick tree of best sums
/// over the values' ranks.
fn heaviest_increasing(values: &[i64], weights: &[u64]) -> Vec<bool> {
    let n = values.len();
    let mut ranks: Vec<i64> = values.to_vec();
    ranks.sort_unstable();
    ranks.dedup();
    let rank = |v: i64| ranks.partition_point(|&r| r < v);
    // tree[k] holds (best sum, index of its last element) over a range of ranks, 1-based.
    let mut tree: Vec<(u64, usize)> = vec![(0, usize::MAX); ranks.len() + 1];
    let mut best = vec![0u64; n];
    let mut back = vec![usize::MAX; n];
    for t in 0..n {
        let r = rank(values[t]);
        // The best over ranks strictly below r.
        let mut found = (0u64, usize::MAX);
        let mut k = r;
        while k > 0 {
            if tree[k].0 > found.0 {
                found = tree[k];
            }
            k &= k - 1;
        }
        best[t] = found.0 + weights[t];
        back[t] = found.1;
        let mut k = r + 1;
        while k < tree.len() {
            if best[t] > tree[k].0 {
                tree[k] = (best[t], t);
            }
            k += k & k.wrapping_neg();
        }
    }
    let mut keep = vec![false; n];
    let mut t = (0..n)
        .max_by_key(|&t| (best[t], Reverse(t)))
        .unwrap_or(usize::MAX);
    while t != usize::MAX {
        keep[t] = true;
        t = back[t];
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Log lengths the tests run on: the shortest with a middle, and longer ones.
    const SIZES: [i64; 4] = [3, 4, 8, 30];

    fn entry(i: i64) -> AuditEntry {
        AuditEntry {
            actor: format!("staff:u{i}"),
            action: "catalog.put".into(),
            target: format!("item:{i}"),
            outcome: "ok 200".into(),
            detail: format!("detail {i}"),
        }
    }

    fn seal(prev_hash: &str, seq: i64, at: i64, e: &AuditEntry) -> AuditRecord {
        AuditRecord {
            seq,
            at,
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            detail: e.detail.clone(),
            prev_hash: prev_hash.to_string(),
            hash: record_hash(prev_hash, seq, at, e),
        }
    }

    /// A genuine log of `n` records.
    fn log(n: i64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map_or(GENESIS.to_string(), |r| r.hash.clone());
            out.push(seal(&prev, seq, 1_700_000_000_000 + seq, &entry(seq)));
        }
        out
    }

    fn forged(prev_hash: &str, seq: i64) -> AuditRecord {
        let e = AuditEntry {
            actor: "staff:mallory".into(),
            action: "keys.issue".into(),
            target: "key:forged".into(),
            outcome: "ok 201".into(),
            detail: String::new(),
        };
        seal(prev_hash, seq, 1_700_000_000_500, &e)
    }

    fn at(log: &mut [AuditRecord], seq: i64) -> &mut AuditRecord {
        log.iter_mut()
            .find(|r| r.seq == seq)
            .expect("a record with that seq")
    }

    fn hash_of(log: &[AuditRecord], seq: i64) -> String {
        log.iter()
            .find(|r| r.seq == seq)
            .map(|r| r.hash.clone())
            .expect("a record with that seq")
    }

    fn prev_of(log: &[AuditRecord], seq: i64) -> String {
        if seq == 1 {
            GENESIS.to_string()
        } else {
            hash_of(log, seq - 1)
        }
    }

    /// Moves every record from `seq` on by `by`, as an UPDATE of the seq column would.
    fn renumber_from(log: &mut [AuditRecord], seq: i64, by: i64) {
        for r in log.iter_mut().filter(|r| r.seq >= seq) {
            r.seq += by;
        }
    }

    fn findings(log: &[AuditRecord]) -> Vec<Finding> {
        verify(log).findings
    }

    #[test]
    fn an_untouched_log_has_no_findings() {
        for n in [1, 2].into_iter().chain(SIZES) {
            let log = log(n);
            let v = verify(&log);
            assert!(v.is_intact(), "{n}: {:?}", v.findings);
            assert_eq!(v.records, n as usize);
            assert_eq!(v.head, log.last().unwrap().hash);
            let mut shuffled = log.clone();
            shuffled.reverse();
            assert!(verify(&shuffled).is_intact());
        }
    }

    #[test]
    fn an_empty_log_is_intact_at_genesis() {
        let v = verify(&[]);
        assert!(v.is_intact());
        assert_eq!((v.records, v.head.as_str()), (0, GENESIS));
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        let a = AuditEntry {
            actor: "ab".into(),
            action: "c".into(),
            ..entry(1)
        };
        let b = AuditEntry {
            actor: "a".into(),
            action: "bc".into(),
            ..entry(1)
        };
        assert_ne!(
            record_hash(GENESIS, 1, 0, &a),
            record_hash(GENESIS, 1, 0, &b)
        );
        assert_ne!(
            record_hash(GENESIS, 1, 0, &a),
            record_hash(GENESIS, 2, 0, &a)
        );
        assert_ne!(
            record_hash(GENESIS, 1, 0, &a),
            record_hash(GENESIS, 1, 1, &a)
        );
        assert_eq!(record_hash(GENESIS, 1, 0, &a).len(), 64);
    }

    #[test]
    fn a_changed_field_names_its_record() {
        type Edit = fn(&mut AuditRecord);
        let edits: [(&str, Edit); 8] = [
            ("actor", |r| r.actor.push('x')),
            ("action", |r| r.action = "keys.revoke".into()),
            ("target", |r| r.target.clear()),
            ("outcome", |r| r.outcome = "refused 403".into()),
            ("detail", |r| r.detail = "nothing".into()),
            ("at", |r| r.at += 1),
            ("hash", |r| r.hash = "f".repeat(64)),
            ("prev_hash", |r| r.prev_hash = "e".repeat(64)),
        ];
        for n in SIZES {
            for (field, edit) in edits {
                for seq in 1..=n {
                    let mut log = log(n);
                    edit(at(&mut log, seq));
                    assert_eq!(
                        findings(&log),
                        vec![Finding::Changed { seq }],
                        "{field} of record {seq} of {n}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_rewritten_record_with_its_hash_recomputed_breaks_the_next_link() {
        for n in SIZES {
            for seq in 1..n {
                let mut log = log(n);
                let r = at(&mut log, seq);
                r.detail = "rewritten".into();
                let prev = r.prev_hash.clone();
                *r = seal(&prev, seq, r.at, &r.entry());
                assert_eq!(
                    findings(&log),
                    vec![Finding::Unlinked { seq: seq + 1 }],
                    "record {seq} of {n}"
                );
            }
        }
    }

    #[test]
    fn a_record_relinked_and_resealed_is_changed() {
        for n in SIZES {
            for seq in 1..n {
                let mut log = log(n);
                let r = at(&mut log, seq);
                let e = r.entry();
                *r = seal(&"d".repeat(64), seq, r.at, &e);
                assert_eq!(
                    findings(&log),
                    vec![Finding::Changed { seq }],
                    "record {seq} of {n}"
                );
            }
        }
    }

    #[test]
    fn a_prev_hash_pointing_back_is_changed_and_a_loop_does_not_hang() {
        let n = 8;
        let mut log = log(n);
        let h = hash_of(&log, 2);
        at(&mut log, 5).prev_hash = h;
        assert_eq!(findings(&log), vec![Finding::Changed { seq: 5 }]);
        let mut log = self::log(n);
        let h = hash_of(&log, 5);
        at(&mut log, 1).prev_hash = h;
        assert_eq!(findings(&log), vec![Finding::Changed { seq: 1 }]);
        let mut log = self::log(n);
        let h = hash_of(&log, 4);
        at(&mut log, 4).prev_hash = h;
        assert_eq!(findings(&log), vec![Finding::Changed { seq: 4 }]);
    }

    #[test]
    fn a_deleted_record_is_named_with_or_without_renumbering() {
        for n in SIZES {
            for seq in 1..n {
                let deleted = vec![Finding::Deleted {
                    from_seq: seq,
                    to_seq: seq,
                }];
                let mut log = log(n);
                log.retain(|r| r.seq != seq);
                assert_eq!(findings(&log), deleted, "record {seq} of {n}");
                renumber_from(&mut log, seq + 1, -1);
                assert_eq!(findings(&log), deleted, "record {seq} of {n}, renumbered");
            }
        }
        let mut log = log(8);
        log.retain(|r| !(3..=5).contains(&r.seq));
        let deleted = vec![Finding::Deleted {
            from_seq: 3,
            to_seq: 5,
        }];
        assert_eq!(findings(&log), deleted);
        renumber_from(&mut log, 6, -3);
        assert_eq!(findings(&log), deleted);
    }

    #[test]
    fn deleting_the_newest_records_is_not_detectable_until_the_next_append() {
        let mut log = log(8);
        log.retain(|r| r.seq <= 5);
        assert!(verify(&log).is_intact());
        // The store's counter has moved on: the next record is 9, chained to 5.
        log.push(forged(&hash_of(&log, 5), 9));
        assert_eq!(
            findings(&log),
            vec![Finding::Deleted {
                from_seq: 6,
                to_seq: 8
            }]
        );
        // All of them deleted: the next record chains to GENESIS.
        let log = vec![forged(GENESIS, 9)];
        assert_eq!(
            findings(&log),
            vec![Finding::Deleted {
                from_seq: 1,
                to_seq: 8
            }]
        );
    }

    #[test]
    fn a_forged_record_chained_in_place_with_renumbering_is_inserted() {
        for n in SIZES {
            for seq in 1..=n {
                let mut log = log(n);
                let prev = prev_of(&log, seq);
                renumber_from(&mut log, seq, 1);
                log.push(forged(&prev, seq));
                assert_eq!(
                    findings(&log),
                    vec![Finding::Inserted { seq }],
                    "at {seq} of {n}"
                );
            }
        }
    }

    #[test]
    fn a_forged_record_chained_onto_the_newest_and_put_in_the_middle_is_inserted() {
        for n in SIZES {
            for seq in 1..n {
                // Sealed for the seq it is stored under, and for the seq an append would give it.
                for sealed_for in [seq, n + 1] {
                    let mut log = log(n);
                    let head = hash_of(&log, n);
                    renumber_from(&mut log, seq, 1);
                    let mut f = forged(&head, sealed_for);
                    f.seq = seq;
                    log.push(f);
                    assert_eq!(
                        findings(&log),
                        vec![Finding::Inserted { seq }],
                        "at {seq} of {n}, sealed for {sealed_for}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_garbage_record_slipped_in_is_inserted() {
        for n in SIZES {
            for seq in 1..=n {
                let mut log = log(n);
                renumber_from(&mut log, seq, 1);
                let mut f = forged(&"a".repeat(64), seq);
                f.hash = "b".repeat(64);
                log.push(f);
                assert_eq!(
                    findings(&log),
                    vec![Finding::Inserted { seq }],
                    "at {seq} of {n}"
                );
            }
        }
    }

    #[test]
    fn two_forged_records_are_both_inserted() {
        let mut log = log(8);
        let prev = hash_of(&log, 3);
        renumber_from(&mut log, 4, 2);
        let f1 = forged(&prev, 4);
        let f2 = forged(&f1.hash, 5);
        log.extend([f1, f2]);
        assert_eq!(
            findings(&log),
            vec![Finding::Inserted { seq: 4 }, Finding::Inserted { seq: 5 }]
        );
    }

    #[test]
    fn a_forged_record_appended_onto_an_old_record_is_inserted() {
        for n in SIZES {
            for onto in 1..n - 1 {
                let prev = hash_of(&log(n), onto);
                // Sealed for its own seq, and for the place after the record it links to.
                for sealed_for in [n + 1, onto + 1] {
                    let mut log = log(n);
                    let mut f = forged(&prev, sealed_for);
                    f.seq = n + 1;
                    log.push(f);
                    assert_eq!(
                        findings(&log),
                        vec![Finding::Inserted { seq: n + 1 }],
                        "onto {onto} of {n}, sealed for {sealed_for}"
                    );
                }
            }
        }
    }

    #[test]
    fn swapped_records_are_both_reordered() {
        for n in SIZES {
            for a in 1..=n {
                for b in a + 1..=n {
                    let mut log = log(n);
                    at(&mut log, a).seq = -1;
                    at(&mut log, b).seq = a;
                    at(&mut log, -1).seq = b;
                    assert_eq!(
                        findings(&log),
                        vec![Finding::Reordered { seq: a }, Finding::Reordered { seq: b }],
                        "{a} and {b} of {n}"
                    );
                }
            }
        }
    }

    #[test]
    fn swapped_contents_are_reordered_too() {
        let mut log = log(8);
        let (three, six) = (at(&mut log, 3).clone(), at(&mut log, 6).clone());
        *at(&mut log, 3) = AuditRecord { seq: 3, ..six };
        *at(&mut log, 6) = AuditRecord { seq: 6, ..three };
        assert_eq!(
            findings(&log),
            vec![Finding::Reordered { seq: 3 }, Finding::Reordered { seq: 6 }]
        );
    }

    #[test]
    fn a_rewritten_seq_is_reported() {
        for n in SIZES {
            for seq in 1..n {
                let mut log = log(n);
                at(&mut log, seq).seq = 100;
                assert_eq!(
                    findings(&log),
                    vec![Finding::Reordered { seq: 100 }],
                    "record {seq} of {n}"
                );
            }
            let mut log = self::log(n);
            at(&mut log, n).seq = n + 5;
            assert_eq!(findings(&log), vec![Finding::Changed { seq: n + 5 }]);
            let mut log = self::log(n);
            at(&mut log, 1).seq = 0;
            assert_eq!(findings(&log), vec![Finding::Changed { seq: 0 }]);
        }
    }

    #[test]
    fn findings_say_which_record() {
        assert_eq!(
            Finding::Deleted {
                from_seq: 4,
                to_seq: 4
            }
            .to_string(),
            "record 4 was deleted"
        );
        assert_eq!(
            Finding::Deleted {
                from_seq: 4,
                to_seq: 6
            }
            .to_string(),
            "records 4 to 6 were deleted"
        );
        for f in [
            Finding::Changed { seq: 7 },
            Finding::Inserted { seq: 7 },
            Finding::Reordered { seq: 7 },
            Finding::Unlinked { seq: 7 },
        ] {
            assert!(f.to_string().starts_with("record 7 "), "{f}");
        }
        assert_eq!(
            serde_json::to_value(Finding::Inserted { seq: 7 }).unwrap(),
            serde_json::json!({"kind": "inserted", "seq": 7})
        );
    }

    #[test]
    fn the_head_is_the_newest_intact_record() {
        let mut log = log(8);
        at(&mut log, 8).detail = "changed".into();
        assert_eq!(verify(&log).head, hash_of(&log, 7));
    }

    /// Whether `log` is a chain by the definition, checked naively.
    fn is_chain(log: &[AuditRecord]) -> bool {
        let mut sorted: Vec<&AuditRecord> = log.iter().collect();
        sorted.sort_by_key(|r| r.seq);
        let mut prev = GENESIS.to_string();
        for (i, r) in sorted.iter().enumerate() {
            if r.seq != i as i64 + 1
                || r.prev_hash != prev
                || r.hash != record_hash(&r.prev_hash, r.seq, r.at, &r.entry())
            {
                return false;
            }
            prev = r.hash.clone();
        }
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// Whatever a writer does to the rows, verification answers, and says intact exactly
        /// when the rows still form a chain.
        #[test]
        fn any_tampering_is_diagnosed_without_panicking(
            n in 1i64..12,
            edits in proptest::collection::vec((0usize..7, 0usize..12, -3i64..15), 1..4),
        ) {
            let mut log = log(n);
            for (kind, which, value) in edits {
                if log.is_empty() {
                    break;
                }
                let i = which % log.len();
                // seq is the table's primary key: no edit may duplicate one.
                let taken = log.iter().any(|r| r.seq == value);
                match kind {
                    0 => { log.remove(i); }
                    1 if !taken => log[i].seq = value,
                    1 => {}
                    4 if taken => {}
                    2 => log[i].detail = format!("edited {value}"),
                    3 => { let h = log[(i + 1) % log.len()].hash.clone(); log[i].prev_hash = h; }
                    4 => log.push(forged(&log[i].hash.clone(), value)),
                    5 => { let s = log[i].seq; log[i] = forged(&log[i].prev_hash.clone(), s); }
                    _ => log[i].hash = format!("{value:064}"),
                }
            }
            let v = verify(&log);
            prop_assert_eq!(v.is_intact(), is_chain(&log), "{:?}", v.findings);
            prop_assert_eq!(v.records, log.len());
        }
    }
}
