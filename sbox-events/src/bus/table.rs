//! How an emit reads its bus's current [`RouteTable`] with no
//! read-modify-write: hazard slots, with asymmetric fences where the
//! operating system has them.
//!
//! The bus keeps its current table as a raw `Arc` pointer. A reader
//! announces the pointer it is about to use in a slot of its thread's
//! record (a plain store), then checks that the pointer is still current;
//! it clears the slot when its emit ends (another plain store) and looks at
//! its slot's bit in its record (a load). A writer (subscribe, unsubscribe, under the
//! bus's control lock) swaps the pointer and looks at every thread's
//! slots:
//!
//! - a replaced table that no slot holds is released at once, before the
//!   writer returns (so dropping a `Subscription` releases its closure
//!   before `drop` returns);
//! - one that slots hold is *retired* with the list of those slots, whose
//!   bits in their records are set. Each of those readers, when its read
//!   ends, takes its slot off the list; the one that empties it releases
//!   the table, before its emit returns. A reader listed while it was
//!   between announcing a pointer and checking it (a pointer just
//!   replaced, or another bus's at a reused address) leaves the lists
//!   when its check fails, before it reads on.
//!
//! An idle thread holds no slot, so it never keeps a table alive. A reader
//! holds the whole table (every event type's routes) for the length of one
//! synchronous emit; `emit_async` reads its type's route and holds only
//! that across its `.await`s.
//!
//! Costs: a read is a few plain loads and stores in the thread's record.
//! Its first read on a thread takes a record, under a lock. A read whose
//! slot was listed, or whose check failed while its slot was listed, takes
//! the lock of the retired tables (waiting behind a writer's system calls)
//! and may release tables there (user code: closures' captures) before it
//! goes on. A write (under the bus's control lock) scans every record ever
//! made (16 slots each, one record per thread alive at once) and issues one
//! or two `membarrier` system calls; writers of all buses serialize on the
//! lock of the retired tables while they do.
//!
//! One exception to "released before `drop` returns": a reader on another
//! bus, stopped by the scheduler within the few instructions between
//! announcing a pointer and checking it, whose pointer was a table since
//! freed whose address the replaced table now has. It is listed as a
//! holder, and releases the table as soon as it runs again.
//!
//! Ordering: a reader's store into its slot and its next load of the
//! pointer must not be reordered (else the writer could miss the slot and
//! release the table under the reader), and likewise a reader's clearing
//! of its slot and its load of the slot's bit (else neither side would
//! take the slot off the list). On Linux the reader only keeps the
//! compiler from reordering them, and the writer makes every thread of the
//! process execute a full barrier (`membarrier`, private expedited) before
//! it looks at the slots: the cost moves to the rare writer. Where that is
//! not available, both sides use a `SeqCst` fence.
//!
//! Emits nested deeper than [`SLOTS`] on one thread, and reads on a thread
//! whose record is gone (during its teardown), read through a lock and an
//! `Arc` clone instead.

use super::routes::RouteTable;
use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU16, Ordering, compiler_fence, fence,
};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Hazard slots per thread: one per nested emit that holds a table.
const SLOTS: usize = 16;
const _: () = assert!(SLOTS <= u16::BITS as usize);

/// One thread's hazard slots: a null slot is free (only the owning thread
/// stores into them). Records are never freed: a thread that ends gives its
/// record back for the next thread to take (unless a slot is still set:
/// see `Owner`'s drop).
struct Record {
    slots: [AtomicPtr<RouteTable>; SLOTS],
    /// Bit `i` is set while a retired table lists slot `i` as a holder
    /// (written only under the `RETIRED` lock, where it is kept exact); read
    /// by the owner when that slot's read ends.
    listed: AtomicU16,
    /// Taken by a live thread.
    owned: AtomicBool,
}

/// Every record ever made (writers scan them all).
static RECORDS: Mutex<Vec<&'static Record>> = Mutex::new(Vec::new());

fn records() -> MutexGuard<'static, Vec<&'static Record>> {
    // Only this module's code runs under the lock, and it cannot panic
    // midway through a change.
    RECORDS.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// This thread's record: null before its first read, and again once
    /// its `OWNER` has been dropped (thread teardown).
    static RECORD: Cell<*const Record> = const { Cell::new(ptr::null()) };
    /// Gives the record back when the thread ends.
    static OWNER: Owner = Owner::take();
}

struct Owner(&'static Record);

impl Owner {
    fn take() -> Owner {
        let mut records = records();
        let free = records.iter().copied().find(|record| {
            record
                .owned
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        });
        let record = free.unwrap_or_else(|| {
            let record: &'static Record = Box::leak(Box::new(Record {
                slots: Default::default(),
                listed: AtomicU16::new(0),
                owned: AtomicBool::new(true),
            }));
            records.push(record);
            record
        });
        RECORD.set(record);
        Owner(record)
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Later reads on this thread take the locked path.
        let _ = RECORD.try_with(|record| record.set(ptr::null()));
        // Normally no read is running on this thread any more: a read's
        // guard lives in a function body, and thread-local destructors run
        // once the thread's code has returned. But `exit` called from a
        // handler runs them with the read's guard still alive: then the
        // record is kept (the process is ending), not handed to another
        // thread with a slot still set.
        let idle = self
            .0
            .slots
            .iter()
            .all(|slot| slot.load(Ordering::Relaxed).is_null());
        if idle {
            self.0.owned.store(false, Ordering::Release);
        }
    }
}

/// How the two sides order their accesses (see the module docs).
static FENCES: AtomicU8 = AtomicU8::new(UNDECIDED);
const UNDECIDED: u8 = 0;
const ASYMMETRIC: u8 = 1;
const SYMMETRIC: u8 = 2;

/// Decides [`FENCES`] once, before the first table exists (so before any
/// reader relies on it).
fn decide_fences() {
    static DECIDE: std::sync::Once = std::sync::Once::new();
    DECIDE.call_once(|| {
        let mode = if !cfg!(miri) && membarrier::register() {
            ASYMMETRIC
        } else {
            SYMMETRIC
        };
        FENCES.store(mode, Ordering::Release);
    });
}

/// The reader's side of a fence.
#[inline(always)]
fn light_fence() {
    if FENCES.load(Ordering::Relaxed) == ASYMMETRIC {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The writer's side: after it, every store a reader made before its light
/// fence is visible, or the reader's loads after that fence see what was
/// stored before this one.
fn heavy_fence() {
    if FENCES.load(Ordering::Relaxed) == ASYMMETRIC {
        membarrier::barrier();
    } else {
        fence(Ordering::SeqCst);
    }
}

#[cfg(target_os = "linux")]
mod membarrier {
    // From <linux/membarrier.h>.
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    /// `Err(errno)` on failure.
    fn call(command: libc::c_long) -> Result<(), i32> {
        let (flags, cpu_id): (libc::c_long, libc::c_long) = (0, 0);
        // SAFETY: `membarrier(cmd, flags, cpu_id)` reads and writes no
        // memory of ours; an unknown command fails with an error code.
        match unsafe { libc::syscall(libc::SYS_membarrier, command, flags, cpu_id) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
        }
    }

    /// Registers the process for private expedited barriers, and checks
    /// that one works.
    pub(super) fn register() -> bool {
        call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED).is_ok()
            && call(MEMBARRIER_CMD_PRIVATE_EXPEDITED).is_ok()
    }

    /// A full barrier on every running thread of the process.
    pub(super) fn barrier() {
        loop {
            match call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) {
                Ok(()) => return,
                // The kernel could not allocate its CPU mask: try again
                // (the writer holds its bus's control lock meanwhile).
                Err(libc::ENOMEM) => std::thread::yield_now(),
                // Registered and checked in `register`, so not expected;
                // going on without the barrier would let a writer release
                // a table a reader uses.
                Err(_) => std::process::abort(),
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod membarrier {
    pub(super) fn register() -> bool {
        false
    }

    pub(super) fn barrier() {
        unreachable!("asymmetric fences are only chosen on Linux")
    }
}

/// A replaced table that slots held when it was replaced, and which.
struct Retired {
    table: Arc<RouteTable>,
    /// (record, slot index) pairs; the table is released when none is left.
    holders: Vec<(&'static Record, usize)>,
}

/// The retired tables of every bus.
static RETIRED: Mutex<Vec<Retired>> = Mutex::new(Vec::new());

fn retired() -> MutexGuard<'static, Vec<Retired>> {
    // Only this module's code runs under the lock (tables are dropped after
    // it is released).
    RETIRED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The slots that hold `table` now.
fn holders_of(table: *mut RouteTable) -> Vec<(&'static Record, usize)> {
    let mut holders = Vec::new();
    for &record in records().iter() {
        for (index, slot) in record.slots.iter().enumerate() {
            if slot.load(Ordering::Acquire) == table {
                holders.push((record, index));
            }
        }
    }
    holders
}

/// Slot `index` of `record` (this thread's) no longer holds a table: takes
/// it off every retired table's list, and returns the tables it was the
/// last holder of, for the caller to drop (which may release closures:
/// user code) once the lock is released.
#[cold]
#[inline(never)]
fn unlist(record: &'static Record, index: usize) -> Vec<Arc<RouteTable>> {
    let mut retired = retired();
    let mut free = Vec::new();
    retired.retain_mut(|entry| {
        entry
            .holders
            .retain(|&(r, i)| !(ptr::eq(r, record) && i == index));
        if entry.holders.is_empty() {
            free.push(Arc::clone(&entry.table));
            return false;
        }
        true
    });
    record
        .listed
        .store(listed_bits(&retired, record), Ordering::Relaxed);
    free
}

/// The bits `record.listed` must have: its slots that `retired` lists.
fn listed_bits(retired: &[Retired], record: &'static Record) -> u16 {
    retired
        .iter()
        .flat_map(|entry| &entry.holders)
        .filter(|&&(r, _)| ptr::eq(r, record))
        .fold(0, |bits, &(_, index)| bits | 1 << index)
}

// Readers on any thread get `&RouteTable` through `Tables` (a raw pointer,
// which asks for nothing): the table must be shareable.
static_assertions::assert_impl_all!(RouteTable: Send, Sync);

/// A bus's current route table.
pub(crate) struct Tables {
    /// From `Arc::into_raw`: this owns one strong count.
    current: AtomicPtr<RouteTable>,
    /// Writers swap `current` under this lock, which makes the locked read
    /// path safe.
    write: Mutex<()>,
}

impl Tables {
    pub(crate) fn new(table: RouteTable) -> Tables {
        decide_fences();
        Tables {
            current: AtomicPtr::new(Arc::into_raw(Arc::new(table)).cast_mut()),
            write: Mutex::new(()),
        }
    }

    fn write(&self) -> MutexGuard<'_, ()> {
        // Guards no data.
        self.write.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current table, held until the guard drops: plain stores and
    /// loads in this thread's record, no read-modify-write.
    #[inline(always)]
    pub(crate) fn load(&self) -> TableGuard<'_> {
        let record = RECORD.get();
        if record.is_null() {
            return self.load_slow(true);
        }
        // SAFETY: a non-null `RECORD` is this thread's record, leaked (so
        // `'static`) and owned by this thread until `OWNER` drops, which
        // sets `RECORD` to null first.
        let record: &'static Record = unsafe { &*record };
        // The first free slot: slot 0 unless this read is nested in another.
        let Some(index) = record
            .slots
            .iter()
            .position(|slot| slot.load(Ordering::Relaxed).is_null())
        else {
            return self.load_slow(false);
        };
        let slot = &record.slots[index];
        let mut table = self.current.load(Ordering::Relaxed);
        loop {
            slot.store(table, Ordering::Relaxed);
            light_fence();
            // Acquire: this reads the pointer a writer stored, so the table
            // it built is visible.
            let now = self.current.load(Ordering::Acquire);
            if now == table {
                break;
            }
            // `table` was replaced (or was another bus's, at an address
            // reused): a writer may have listed this slot as its holder.
            // Leave those lists before announcing `now`, so that this read
            // does not delay their release.
            self.leave_lists(record, index);
            table = now;
        }
        TableGuard {
            // SAFETY: `current` is never null (it comes from
            // `Arc::into_raw`). `table` was current after this thread's
            // slot held it (checked above, with the fences the module docs
            // describe), so a writer that replaces it sees the slot and
            // lists it instead of releasing the table; a listed table is
            // released only once no slot is left on its list, and this one
            // leaves it when the guard drops.
            table: unsafe { NonNull::new_unchecked(table) },
            record,
            index,
            _tables: PhantomData,
        }
    }

    /// Clears slot `index` of `record` (this thread's) and takes it off
    /// the lists of retired tables, dropping the ones it was the last
    /// holder of.
    #[cold]
    #[inline(never)]
    fn leave_lists(&self, record: &'static Record, index: usize) {
        record.slots[index].store(ptr::null_mut(), Ordering::Release);
        light_fence();
        if record.listed.load(Ordering::Relaxed) & 1 << index != 0 {
            drop(unlist(record, index));
        }
    }

    /// `load` when this thread has no record yet (its first read: take
    /// one), or no free slot (reads nested deeper than [`SLOTS`]), or its
    /// record is gone (thread teardown): then under the lock writers swap
    /// under, an `Arc` clone.
    #[cold]
    #[inline(never)]
    fn load_slow(&self, no_record: bool) -> TableGuard<'_> {
        if no_record && OWNER.try_with(|_| ()).is_ok() && !RECORD.get().is_null() {
            return self.load();
        }
        let table = Arc::into_raw(self.load_full_locked()).cast_mut();
        TableGuard {
            // SAFETY: from `Arc::into_raw`, never null.
            table: unsafe { NonNull::new_unchecked(table) },
            record: &NO_RECORD,
            index: usize::MAX,
            _tables: PhantomData,
        }
    }

    /// The current table as an `Arc`, under the lock writers swap under:
    /// no slot, so never a release (for writers, who hold the bus's control
    /// lock, and the locked read path).
    pub(crate) fn load_full_locked(&self) -> Arc<RouteTable> {
        let _write = self.write();
        let table = self.current.load(Ordering::Acquire);
        // SAFETY: `current` came from `Arc::into_raw` and owns a strong
        // count. Writers swap it out under this lock, so while the lock is
        // held it is not swapped out, and the count added here comes
        // before the one `current` owned can be given up (after the swap).
        unsafe {
            Arc::increment_strong_count(table);
            Arc::from_raw(table)
        }
    }

    /// Makes `table` current (the caller holds the bus's control lock).
    /// Returns the replaced table when no reader holds it, for the caller
    /// to drop once its locks are released (dropping it may release
    /// closures: user code); else it is retired, and its last reader
    /// releases it.
    pub(crate) fn replace(&self, table: Arc<RouteTable>) -> Option<Arc<RouteTable>> {
        // Held throughout: a reader taking its slot off a list waits until
        // the list is complete.
        let mut retired = retired();
        let old = {
            let _write = self.write();
            self.current
                .swap(Arc::into_raw(table).cast_mut(), Ordering::AcqRel)
        };
        // SAFETY: `current` owned this strong count; it is ours now.
        let old_table = unsafe { Arc::from_raw(old) };
        // Every reader that read `old` has its slot visible now, or sees
        // the new pointer when it checks.
        heavy_fence();
        let candidates = holders_of(old);
        if candidates.is_empty() {
            return Some(old_table);
        }
        for &(record, index) in &candidates {
            record.listed.fetch_or(1 << index, Ordering::Relaxed);
        }
        // A holder that has cleared its slot is seen to have, or sees its
        // slot's bit set when its read ends (and then waits for the lock).
        heavy_fence();
        let (holders, cleared): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .partition(|&(record, index)| record.slots[index].load(Ordering::Acquire) == old);
        let released = if holders.is_empty() {
            Some(old_table)
        } else {
            retired.push(Retired {
                table: old_table,
                holders,
            });
            None
        };
        // The slots that cleared meanwhile keep no bit they do not need.
        for (record, _) in cleared {
            record
                .listed
                .store(listed_bits(&retired, record), Ordering::Relaxed);
        }
        released
    }

    /// The current table, for the bus's drop (no reader of this bus is
    /// left: none can hold the bus. A retired table of this bus still
    /// listed is released by its listed holders, as ever).
    pub(crate) fn take(&mut self) -> Arc<RouteTable> {
        let empty = Arc::into_raw(Arc::new(RouteTable::default())).cast_mut();
        let current = std::mem::replace(self.current.get_mut(), empty);
        // SAFETY: `current` owned this strong count; it is ours now.
        unsafe { Arc::from_raw(current) }
    }
}

impl Drop for Tables {
    fn drop(&mut self) {
        // SAFETY: `current` owns a strong count (`new`, `replace` and
        // `take` keep it so); no reader is left.
        drop(unsafe { Arc::from_raw(*self.current.get_mut()) });
    }
}

/// The record of guards that hold a strong count instead of a slot.
static NO_RECORD: Record = Record {
    slots: [const { AtomicPtr::new(ptr::null_mut()) }; SLOTS],
    listed: AtomicU16::new(0),
    owned: AtomicBool::new(true),
};

/// A table read by [`Tables::load`]. Tied to its thread (it holds one of
/// the thread's slots): neither `Send` nor `Sync`.
pub(crate) struct TableGuard<'a> {
    /// From `Arc::into_raw`.
    table: NonNull<RouteTable>,
    /// The record whose slot `index` holds `table`; or `NO_RECORD` (index
    /// `usize::MAX`) when the guard holds a strong count of `table`
    /// instead (the locked path).
    record: &'static Record,
    index: usize,
    _tables: PhantomData<(&'a Tables, *const ())>,
}

impl Deref for TableGuard<'_> {
    type Target = RouteTable;

    #[inline]
    fn deref(&self) -> &RouteTable {
        // SAFETY: the guard's slot, or its strong count, keeps the table
        // alive while the guard lives.
        unsafe { self.table.as_ref() }
    }
}

impl Drop for TableGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let Some(slot) = self.record.slots.get(self.index) else {
            // SAFETY: the guard owns this strong count (`load_slow`).
            drop(unsafe { Arc::from_raw(self.table.as_ptr().cast_const()) });
            return;
        };
        slot.store(ptr::null_mut(), Ordering::Release);
        light_fence();
        if self.record.listed.load(Ordering::Relaxed) & 1 << self.index != 0 {
            // The last listed holder of a retired table releases it: its
            // closures' release is isolated (`release`) and reported by
            // whoever asked for the table.
            drop(unlist(self.record, self.index));
        }
    }
}
