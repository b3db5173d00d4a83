//! What caused what in one trace: [`TraceTree`], built from records (a
//! history's, or imported from JSON Lines) by their causes.

use super::RecordedEvent;
use crate::flight::HandlerRun;
use crate::trace::TraceId;
use std::collections::HashMap;

/// The causal tree of one trace: each event with its handlers in the order
/// they ran and, under each handler, the events its calls emitted.
///
/// Built by [`History::tree`](super::History::tree) or
/// [`TraceTree::from_records`] (for records imported from JSON Lines), and
/// shown as indented text (its `Display`: handlers with their outcome and
/// duration, the events each emitted under it, events caused outside a
/// handler as `then <event>`), as a
/// [Mermaid](TraceTree::to_mermaid) flowchart, or as a
/// [Chrome trace](TraceTree::to_chrome_trace).
///
/// Handlers show their outcome and duration when the bus's
/// [flight recorder](crate::EventBusBuilder::flight_recorder) was on;
/// without it a handler shows up only when it emitted something (known from
/// its events' causes). An event whose cause is not among the records (it
/// was evicted, or came from another process) is a root.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// use sbox_events::{Event, EventBus, EventContext, SubscribeOptions};
///
/// #[derive(Event, Serialize, Deserialize)]
/// #[event(name = "demo.fetched")]
/// struct Fetched { bytes: u64 }
///
/// #[derive(Event, Serialize, Deserialize)]
/// #[event(name = "demo.built")]
/// struct Built { servers: u32 }
///
/// let bus = EventBus::builder()
///     .history(1 << 20)
///     .flight_recorder(true)
///     .static_handlers(false)
///     .build()?;
/// let b = bus.clone();
/// let builder = SubscribeOptions::new().name("build");
/// bus.subscribe_with(builder, move |_: &Fetched, _: &EventContext| {
///     b.emit(Built { servers: 2 });
/// })
/// .detach();
/// let report = bus.emit(Fetched { bytes: 10 });
/// let tree = bus.history().unwrap().tree(report.trace_id());
/// let root = &tree.roots()[0];
/// assert_eq!(root.record().name(), "demo.fetched");
/// assert_eq!(root.handlers()[0].name(), "build");
/// assert_eq!(root.handlers()[0].emitted()[0].record().name(), "demo.built");
/// println!("{tree}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct TraceTree {
    pub(crate) trace_id: TraceId,
    pub(crate) roots: Vec<EventNode>,
    pub(crate) events: usize,
}

/// One event of a [`TraceTree`].
#[derive(Clone, Debug)]
pub struct EventNode {
    pub(crate) record: RecordedEvent,
    pub(crate) handlers: Vec<HandlerNode>,
    pub(crate) unattributed: Vec<EventNode>,
}

/// One handler of an event in a [`TraceTree`], with what it emitted.
#[derive(Clone, Debug)]
pub struct HandlerNode {
    pub(crate) name: String,
    pub(crate) run: Option<HandlerRun>,
    pub(crate) emitted: Vec<EventNode>,
}

impl TraceTree {
    /// The tree of `trace_id` among `records` (other traces' records are
    /// left out). `records` are expected in the order they were recorded,
    /// as [`History::query`](crate::history::History::query) and
    /// [`import_jsonl`](crate::history::import_jsonl) give them: a replay
    /// recorded again keeps its record's sequence number (and may keep its
    /// timestamp), and that order is what tells the copies apart.
    pub fn from_records(records: &[RecordedEvent], trace_id: TraceId) -> TraceTree {
        // With each record, where it was among `records` (the order it was
        // recorded in, which `parents` goes by: a replay of the same
        // record keeps its sequence number and can keep its timestamp).
        let mut ordered: Vec<(usize, &RecordedEvent)> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.envelope().trace_id() == trace_id)
            .collect();
        ordered.sort_by_key(|(_, r)| (r.envelope().sequence(), r.envelope().timestamp()));
        let (recorded_at, records): (Vec<usize>, Vec<&RecordedEvent>) = ordered.into_iter().unzip();
        let parents = parents(&records, &recorded_at);
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); records.len()];
        let mut roots = Vec::new();
        for (child, parent) in parents.iter().enumerate() {
            match parent {
                Some(parent) => children[*parent].push(child),
                None => roots.push(child),
            }
        }
        let roots = roots
            .into_iter()
            .map(|root| node(root, &records, &children))
            .collect();
        TraceTree {
            trace_id,
            roots,
            events: records.len(),
        }
    }

    /// The trace.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The events nothing in the records caused, in sequence order.
    pub fn roots(&self) -> &[EventNode] {
        &self.roots
    }

    /// How many events the tree holds.
    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether no record is of this trace.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Every event, depth first, in the order the text shows them.
    pub fn events(&self) -> Vec<&EventNode> {
        fn walk<'t>(node: &'t EventNode, out: &mut Vec<&'t EventNode>) {
            out.push(node);
            for child in node.children() {
                walk(child, out);
            }
        }
        let mut out = Vec::with_capacity(self.events);
        for root in &self.roots {
            walk(root, &mut out);
        }
        out
    }
}

impl EventNode {
    /// The event's record.
    pub fn record(&self) -> &RecordedEvent {
        &self.record
    }

    /// Its handlers, in the order they ran; handlers known only from what
    /// they emitted (no flight recorder) come last.
    pub fn handlers(&self) -> &[HandlerNode] {
        &self.handlers
    }

    /// Events it caused outside any of its handlers' calls: emitted with
    /// [`EmitOptions::caused_by`](crate::EmitOptions::caused_by) by code
    /// that is not a handler (a pipeline's next stage), or by code that
    /// consumed it from a stream in its trace. The text shows each as
    /// `then <event>`, Mermaid as a dotted arrow.
    pub fn unattributed(&self) -> &[EventNode] {
        &self.unattributed
    }

    /// Every event it caused, by handler, then the unattributed ones.
    pub fn children(&self) -> impl Iterator<Item = &EventNode> {
        self.handlers
            .iter()
            .flat_map(|h| &h.emitted)
            .chain(&self.unattributed)
    }
}

impl HandlerNode {
    /// The handler's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How its call went, if the flight recorder was on.
    pub fn run(&self) -> Option<&HandlerRun> {
        self.run.as_ref()
    }

    /// The events its call emitted, in order.
    pub fn emitted(&self) -> &[EventNode] {
        &self.emitted
    }
}

/// Each record's parent (the record its cause names): by event id when the
/// cause has one (a cause whose event is not among the records, say in
/// another process, makes a root); otherwise by sequence number and event
/// name, from the same process (sequence numbers are per process). Of a
/// cycle of causes, the first record's cause is dropped, and so is a cause
/// that would go deeper than [`MAX_DEPTH`] (only a crafted file has those).
///
/// Records can share an event id: a recorded replay keeps its original's,
/// a redelivered event from elsewhere its first delivery's. A child then
/// goes under the one that is a replay as it is (or is not), the closest
/// recorded before it (`recorded_at` gives each record's place in the order
/// they were recorded; a record is recorded before its handlers run, so
/// before its children).
fn parents(records: &[&RecordedEvent], recorded_at: &[usize]) -> Vec<Option<usize>> {
    let mut by_id: HashMap<_, usize> = HashMap::with_capacity(records.len());
    // Ids held by several records: all of them, originals and replays
    // apart, each in the order recorded.
    let mut shared: HashMap<_, [Vec<usize>; 2]> = HashMap::new();
    let mut by_sequence = HashMap::with_capacity(records.len());
    for (at, record) in records.iter().enumerate() {
        let id = record.envelope().event_id();
        if let Some(&first) = by_id.get(&id) {
            let all = shared.entry(id).or_insert_with(|| {
                let mut all = [Vec::new(), Vec::new()];
                all[usize::from(records[first].envelope().is_replay())].push(first);
                all
            });
            all[usize::from(record.envelope().is_replay())].push(at);
        } else {
            by_id.insert(id, at);
        }
        by_sequence
            .entry(record.envelope().sequence())
            .or_insert(at);
    }
    for all in shared.values_mut().flatten() {
        all.sort_by_key(|&at| recorded_at[at]);
    }
    // The last of `all` recorded before `child`.
    let before = |all: &[usize], child: usize| {
        let count = all.partition_point(|&at| recorded_at[at] < recorded_at[child]);
        count.checked_sub(1).map(|last| all[last])
    };
    // A copy of the same kind (original or replay) recorded before the
    // child, else one of the other kind recorded before it (a replayed
    // child's cause may be only the original so far), else the first
    // recorded (records merged out of order).
    let holder = |id, child: usize| match shared.get(&id) {
        None => by_id.get(&id).copied(),
        Some(all) => {
            let replay = usize::from(records[child].envelope().is_replay());
            before(&all[replay], child)
                .or_else(|| before(&all[1 - replay], child))
                .or_else(|| {
                    all.iter()
                        .filter_map(|copies| copies.first().copied())
                        .min_by_key(|&at| recorded_at[at])
                })
        }
    };
    let mut parents: Vec<Option<usize>> = records
        .iter()
        .enumerate()
        .map(|(at, record)| {
            let cause = record.envelope().cause()?;
            let parent = match cause.event_id() {
                Some(id) => holder(id, at)?,
                None => {
                    let parent = *by_sequence.get(&cause.sequence())?;
                    let found = records[parent];
                    let same = found.name() == cause.event()
                        && found.envelope().remote() == record.envelope().remote();
                    same.then_some(parent)?
                }
            };
            (parent != at).then_some(parent)
        })
        .collect();
    cut_cycles(&mut parents);
    for start in 0..parents.len() {
        let mut at = start;
        let mut depth = 0;
        while let Some(parent) = parents[at] {
            depth += 1;
            if depth > MAX_DEPTH {
                parents[start] = None;
                break;
            }
            at = parent;
        }
    }
    parents
}

/// Cuts one link of every cycle of `parents`: the one from the cycle's
/// first record. Events leading into a cycle keep theirs. Each walk up
/// stops at a record an earlier walk finished, so each link is followed
/// once.
fn cut_cycles(parents: &mut [Option<usize>]) {
    const NEW: u8 = 0;
    const ON_WALK: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; parents.len()];
    let mut walk = Vec::new();
    for start in 0..parents.len() {
        let mut at = Some(start);
        while let Some(here) = at {
            match state[here] {
                DONE => break,
                ON_WALK => {
                    // Back on this walk: `walk[from..]` is a cycle.
                    let from = walk.iter().position(|&p| p == here).unwrap_or(0);
                    let first = walk[from..].iter().copied().min().unwrap_or(here);
                    parents[first] = None;
                    break;
                }
                _ => {
                    state[here] = ON_WALK;
                    walk.push(here);
                    at = parents[here];
                }
            }
        }
        for done in walk.drain(..) {
            state[done] = DONE;
        }
    }
}

/// The deepest a tree goes: an event further down starts a tree of its own
/// (a bus refuses emits nested deeper than its `max_depth`, 32 by default,
/// so only a crafted file gets here).
const MAX_DEPTH: usize = 256;

fn node(at: usize, records: &[&RecordedEvent], children: &[Vec<usize>]) -> EventNode {
    let record = records[at];
    let mut handlers: Vec<HandlerNode> = record
        .handlers()
        .iter()
        .map(|run| HandlerNode {
            name: run.handler().to_owned(),
            run: Some(run.clone()),
            emitted: Vec::new(),
        })
        .collect();
    let mut unattributed = Vec::new();
    for &child in &children[at] {
        let child_node = node(child, records, children);
        let handler = records[child]
            .envelope()
            .cause()
            .and_then(|cause| cause.handler());
        let Some(name) = handler else {
            unattributed.push(child_node);
            continue;
        };
        match handlers.iter_mut().find(|h| h.name == name) {
            Some(handler) => handler.emitted.push(child_node),
            None => handlers.push(HandlerNode {
                name: name.to_owned(),
                run: None,
                emitted: vec![child_node],
            }),
        }
    }
    EventNode {
        record: record.clone(),
        handlers,
        unattributed,
    }
}
