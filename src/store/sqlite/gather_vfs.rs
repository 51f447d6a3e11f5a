//! A thin SQLite VFS over the default one that gathers a connection's writes to its WAL
//! into one `pwrite` per run of adjacent bytes (at most `RUN_MAX`). SQLite writes each
//! WAL frame as two calls (its 24-byte header, then the page), so a commit of 32 payments
//! made about 140 `pwrite`s, and on this kind of virtual machine the calls themselves,
//! not the bytes, were a quarter of the writer thread's time (BENCHMARKS.md, "One write
//! a commit").
//!
//! The rule that keeps it safe: **the run is empty whenever the connection does not hold
//! the WAL's write lock**, and written out before anyone could look for its bytes.
//! - A write that continues the run (or lands inside it) is copied into it; any other
//!   write first writes the run out, so the file sees the writes in SQLite's order.
//! - The run is written out before the WAL's `xSync`, `xTruncate`, `xFileSize` and
//!   `xClose`, and before a read of the WAL that overlaps it. SQLite counts nothing as
//!   durable before `xSync`; with `synchronous = FULL` (every paytool connection that
//!   writes) a commit's frames are synced before SQLite publishes them in the WAL index.
//! - The database file is wrapped too, only to learn two moments from its shared-memory
//!   calls: the WAL index's header being published (`xShmBarrier`: the run is written
//!   out first, which also covers `synchronous` below FULL) and the WAL's write lock being
//!   released (`xShmLock`: the run is written out first, so frames of a transaction
//!   rolled back reach the file now, as they would without this VFS, and never later,
//!   over frames another connection has committed since).
//! - A write that fails while the run goes out fails the call that wrote it out (for a
//!   commit, its sync, which SQLite treats as a failed commit), and the run is emptied.
//! - The database file, the shared-memory index and every other file are the default
//!   VFS's own; connections that only read use the default VFS directly.

use rusqlite::ffi;
use std::collections::HashMap;
use std::ffi::{CStr, c_int, c_void};
use std::sync::{Mutex, OnceLock};

/// The VFS's registered name, for `Connection::open_with_flags_and_vfs`.
pub const NAME: &CStr = c"paytool-gather";

/// Most bytes gathered before they are written out regardless. The default VFS cannot
/// take one write of 128 KiB or more (it keeps 17 bits of a write's length), so a commit
/// of 32 payments, about 160 KB of frames, goes out as three writes of at most this.
const RUN_MAX: usize = 64 << 10;

/// The WAL's write lock, the first of the locks in its shared-memory index (wal.c).
const WAL_WRITE_LOCK: c_int = 0;

/// Registers the VFS (once a process) and returns its name.
pub fn register() -> rusqlite::Result<&'static CStr> {
    static REGISTERED: OnceLock<Result<(), (c_int, String)>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite3_vfs_find initialises SQLite and returns the default VFS (a
            // static of the library) or null; the copy made from it is leaked, so it lives
            // as long as the registration, which is never undone.
            unsafe {
                let default = ffi::sqlite3_vfs_find(std::ptr::null());
                if default.is_null() {
                    return Err((ffi::SQLITE_ERROR, "SQLite has no default VFS".into()));
                }
                let mut vfs: ffi::sqlite3_vfs = *default;
                vfs.szOsFile = INNER_OFFSET as c_int + (*default).szOsFile;
                vfs.zName = NAME.as_ptr();
                vfs.pNext = std::ptr::null_mut();
                vfs.xOpen = Some(open);
                let leaked = Box::leak(Box::new(vfs));
                DEFAULT.get_or_init(|| DefaultVfs(default));
                match ffi::sqlite3_vfs_register(leaked, 0) {
                    ffi::SQLITE_OK => Ok(()),
                    rc => Err((rc, format!("registering the {NAME:?} VFS failed"))),
                }
            }
        })
        .clone()
        .map(|()| NAME)
        .map_err(|(rc, why)| rusqlite::Error::SqliteFailure(ffi::Error::new(rc), Some(why)))
}

/// The default VFS, whose files this one opens and wraps.
struct DefaultVfs(*mut ffi::sqlite3_vfs);
// SAFETY: a VFS object is immutable once registered, and SQLite calls it from any thread.
unsafe impl Send for DefaultVfs {}
unsafe impl Sync for DefaultVfs {}
static DEFAULT: OnceLock<DefaultVfs> = OnceLock::new();

/// The database files open through this VFS, by the address of the name SQLite opened
/// each with. SQLite opens a connection's WAL with a name in the same allocation, which
/// `sqlite3_filename_database` leads back to: that is how a WAL finds its database file.
/// Addresses, as numbers, because raw pointers are not `Send`.
fn open_databases() -> &'static Mutex<HashMap<usize, usize>> {
    static OPEN: OnceLock<Mutex<HashMap<usize, usize>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// A wrapped database file: SQLite sees `base`; the default VFS's file lives in the same
/// allocation, at `INNER_OFFSET`.
#[repr(C)]
struct DbFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// The key of this file in `open_databases`.
    name: usize,
    /// The connection's WAL while it is open, else null.
    wal: *mut WalFile,
}

/// A wrapped WAL file, laid out as `DbFile` is.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    run: Run,
    /// The connection's database file, while it is open, else null.
    db: *mut DbFile,
}

/// Bytes written to the WAL but not yet passed to the file: `bytes` belong at `start`.
struct Run {
    start: i64,
    bytes: Vec<u8>,
}

impl Run {
    fn end(&self) -> i64 {
        self.start + self.bytes.len() as i64
    }
}

/// Where the default VFS's file starts inside ours: after the larger of our headers,
/// pointer-aligned.
const INNER_OFFSET: usize = {
    let db = std::mem::size_of::<DbFile>();
    let wal = std::mem::size_of::<WalFile>();
    (if db > wal { db } else { wal }).next_multiple_of(8)
};

/// The methods of a wrapped WAL file. Version 1: SQLite maps shared memory and pages
/// only through the database file, never through its WAL.
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(pass::lock::<WalFile>),
    xUnlock: Some(pass::unlock::<WalFile>),
    xCheckReservedLock: Some(pass::check_reserved_lock::<WalFile>),
    xFileControl: Some(pass::file_control::<WalFile>),
    xSectorSize: Some(pass::sector_size::<WalFile>),
    xDeviceCharacteristics: Some(pass::device_characteristics::<WalFile>),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The methods of a wrapped database file: the default VFS's, but for closing and the
/// two shared-memory moments the WAL's run must be written out before.
static DB_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(db_close),
    xRead: Some(pass::read::<DbFile>),
    xWrite: Some(pass::write::<DbFile>),
    xTruncate: Some(pass::truncate::<DbFile>),
    xSync: Some(pass::sync::<DbFile>),
    xFileSize: Some(pass::file_size::<DbFile>),
    xLock: Some(pass::lock::<DbFile>),
    xUnlock: Some(pass::unlock::<DbFile>),
    xCheckReservedLock: Some(pass::check_reserved_lock::<DbFile>),
    xFileControl: Some(pass::file_control::<DbFile>),
    xSectorSize: Some(pass::sector_size::<DbFile>),
    xDeviceCharacteristics: Some(pass::device_characteristics::<DbFile>),
    xShmMap: Some(pass::shm_map::<DbFile>),
    xShmLock: Some(db_shm_lock),
    xShmBarrier: Some(db_shm_barrier),
    xShmUnmap: Some(pass::shm_unmap::<DbFile>),
    xFetch: Some(pass::fetch),
    xUnfetch: Some(pass::unfetch::<DbFile>),
};

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(DefaultVfs(default)) = DEFAULT.get() else {
        return ffi::SQLITE_ERROR;
    };
    // SAFETY: SQLite hands us `szOsFile` zeroed bytes at `file`: room for our header and
    // the default VFS's file after it, or for the default VFS's file alone.
    unsafe {
        let Some(default_open) = (**default).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        let is_db = flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && !name.is_null();
        let is_wal = flags & ffi::SQLITE_OPEN_WAL != 0 && !name.is_null();
        if !is_db && !is_wal {
            // Anything else is the default VFS's file itself, with its own methods.
            return default_open(*default, name, file, flags, out_flags);
        }
        let inner = file
            .cast::<u8>()
            .add(INNER_OFFSET)
            .cast::<ffi::sqlite3_file>();
        // Null until the inner file is open: SQLite then calls no method of a file whose
        // open failed.
        (*file).pMethods = std::ptr::null();
        let rc = default_open(*default, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if (*inner).pMethods.is_null() {
            return ffi::SQLITE_CANTOPEN;
        }
        if is_db {
            if (*(*inner).pMethods).iVersion < 3 {
                // Not the unix VFS's files as we know them: nothing to gather for.
                return wrap_failed(inner);
            }
            let db = file.cast::<DbFile>();
            db.write(DbFile {
                base: ffi::sqlite3_file {
                    pMethods: &DB_METHODS,
                },
                inner,
                name: name as usize,
                wal: std::ptr::null_mut(),
            });
            lock_open_databases().insert(name as usize, db as usize);
        } else {
            let db_name = ffi::sqlite3_filename_database(name) as usize;
            let db = lock_open_databases()
                .get(&db_name)
                .map_or(std::ptr::null_mut(), |&d| d as *mut DbFile);
            if db.is_null() || !(*db).wal.is_null() {
                return wrap_failed(inner);
            }
            let wal = file.cast::<WalFile>();
            wal.write(WalFile {
                base: ffi::sqlite3_file {
                    pMethods: &WAL_METHODS,
                },
                inner,
                run: Run {
                    start: 0,
                    bytes: Vec::new(),
                },
                db,
            });
            (*db).wal = wal;
        }
        rc
    }
}

/// Closes an inner file this VFS would not know how to wrap safely; the open fails.
unsafe fn wrap_failed(inner: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        if let Some(close) = (*(*inner).pMethods).xClose {
            close(inner);
        }
    }
    ffi::SQLITE_CANTOPEN
}

fn lock_open_databases() -> std::sync::MutexGuard<'static, HashMap<usize, usize>> {
    // The map holds plain numbers: a panic elsewhere cannot leave it half changed.
    open_databases()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The default VFS's methods of an inner file.
/// SAFETY: `inner` is an open file of the default VFS.
unsafe fn methods<'a>(inner: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    unsafe { &*(*inner).pMethods }
}

/// Writes the WAL's gathered run to the file, in one call; empties it even when the write
/// fails, since SQLite rewrites whatever it still needs after an error.
/// SAFETY: `wal` is a WAL file `open` wrapped and `wal_close` has not closed.
unsafe fn write_out(wal: *mut WalFile) -> c_int {
    unsafe {
        let wal = &mut *wal;
        if wal.run.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let rc = match methods(wal.inner).xWrite {
            Some(write) => write(
                wal.inner,
                wal.run.bytes.as_ptr().cast::<c_void>(),
                wal.run.bytes.len() as c_int,
                wal.run.start,
            ),
            None => ffi::SQLITE_IOERR_WRITE,
        };
        wal.run.bytes.clear();
        rc
    }
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let wal = file.cast::<WalFile>();
        let written = write_out(wal);
        if !(*wal).db.is_null() {
            (*(*wal).db).wal = std::ptr::null_mut();
        }
        let closed = pass::close(file.cast::<WalFile>());
        std::ptr::drop_in_place(&mut (*wal).run);
        if written != ffi::SQLITE_OK {
            written
        } else {
            closed
        }
    }
}

unsafe extern "C" fn wal_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let wal = file.cast::<WalFile>();
        let run = &(*wal).run;
        if !run.bytes.is_empty() && offset < run.end() && offset + i64::from(amount) > run.start {
            let rc = write_out(wal);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        pass::read::<WalFile>(file, buf, amount, offset)
    }
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let wal = file.cast::<WalFile>();
        let len = amount as usize;
        // SAFETY: SQLite passes `amount` readable bytes at `buf`, for this call only.
        let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        let end = offset + i64::from(amount);
        let run = &mut (*wal).run;
        if !run.bytes.is_empty() && offset >= run.start && end <= run.end() {
            // A rewrite inside the run (SQLite rewrites a frame of the open transaction).
            let at = (offset - run.start) as usize;
            run.bytes[at..at + len].copy_from_slice(bytes);
            return ffi::SQLITE_OK;
        }
        let continues = run.bytes.is_empty() || offset == run.end();
        if !continues || run.bytes.len() + len > RUN_MAX {
            let rc = write_out(wal);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let run = &mut (*wal).run;
        if len > RUN_MAX {
            return pass::write::<WalFile>(file, buf, amount, offset);
        }
        if run.bytes.is_empty() {
            run.start = offset;
        }
        run.bytes.extend_from_slice(bytes);
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn wal_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    unsafe {
        match write_out(file.cast()) {
            ffi::SQLITE_OK => pass::truncate::<WalFile>(file, size),
            rc => rc,
        }
    }
}

unsafe extern "C" fn wal_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    unsafe {
        match write_out(file.cast()) {
            ffi::SQLITE_OK => pass::sync::<WalFile>(file, flags),
            rc => rc,
        }
    }
}

unsafe extern "C" fn wal_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    unsafe {
        match write_out(file.cast()) {
            ffi::SQLITE_OK => pass::file_size::<WalFile>(file, size),
            rc => rc,
        }
    }
}

unsafe extern "C" fn db_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let db = file.cast::<DbFile>();
        lock_open_databases().remove(&(*db).name);
        // SQLite closes a connection's WAL before its database file; should it not, the
        // WAL forgets this file and keeps its run to its own close.
        if !(*db).wal.is_null() {
            (*(*db).wal).db = std::ptr::null_mut();
        }
        pass::close(db)
    }
}

unsafe extern "C" fn db_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    unsafe {
        let db = file.cast::<DbFile>();
        let releases_write_lock = flags & ffi::SQLITE_SHM_UNLOCK != 0
            && offset <= WAL_WRITE_LOCK
            && WAL_WRITE_LOCK < offset + n;
        if releases_write_lock && !(*db).wal.is_null() {
            // Frames of a transaction rolled back reach the file now, never later. An
            // unlock cannot fail, and the run is empty after this either way.
            write_out((*db).wal);
        }
        match methods((*db).inner).xShmLock {
            Some(shm_lock) => shm_lock((*db).inner, offset, n, flags),
            None => ffi::SQLITE_IOERR_SHMLOCK,
        }
    }
}

unsafe extern "C" fn db_shm_barrier(file: *mut ffi::sqlite3_file) {
    unsafe {
        let db = file.cast::<DbFile>();
        if !(*db).wal.is_null() {
            // Before the WAL index's header is published: with synchronous = FULL the
            // commit's sync has written the run already, and this finds it empty.
            write_out((*db).wal);
        }
        if let Some(barrier) = methods((*db).inner).xShmBarrier {
            barrier((*db).inner);
        }
    }
}

/// Calls passed straight to the default VFS's file inside a wrapper.
mod pass {
    use super::{DbFile, WalFile, methods};
    use rusqlite::ffi;
    use std::ffi::{c_int, c_void};

    /// A wrapper whose default-VFS file is at `inner`.
    pub trait Wrapper {
        /// SAFETY: `file` is a wrapper of this type that `open` made and has not closed.
        unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file;
    }
    impl Wrapper for DbFile {
        unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
            unsafe { (*file.cast::<DbFile>()).inner }
        }
    }
    impl Wrapper for WalFile {
        unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
            unsafe { (*file.cast::<WalFile>()).inner }
        }
    }

    pub unsafe fn close<W: Wrapper>(file: *mut W) -> c_int {
        unsafe {
            let inner = W::inner(file.cast());
            methods(inner).xClose.map_or(ffi::SQLITE_OK, |f| f(inner))
        }
    }

    /// One pass-through method per line: its name, the default VFS's method it calls,
    /// the arguments after the file, and what it returns should that method be missing.
    macro_rules! forward {
        ($(fn $name:ident => $method:ident($($arg:ident: $ty:ty),*) or $missing:expr;)*) => {$(
            pub unsafe extern "C" fn $name<W: Wrapper>(
                file: *mut ffi::sqlite3_file,
                $($arg: $ty),*
            ) -> c_int {
                unsafe {
                    let inner = W::inner(file);
                    methods(inner).$method.map_or($missing, |f| f(inner, $($arg),*))
                }
            }
        )*};
    }

    forward! {
        fn read => xRead(buf: *mut c_void, amount: c_int, offset: i64) or ffi::SQLITE_IOERR_READ;
        fn write => xWrite(buf: *const c_void, amount: c_int, offset: i64)
            or ffi::SQLITE_IOERR_WRITE;
        fn truncate => xTruncate(size: i64) or ffi::SQLITE_IOERR_TRUNCATE;
        fn sync => xSync(flags: c_int) or ffi::SQLITE_IOERR_FSYNC;
        fn file_size => xFileSize(size: *mut i64) or ffi::SQLITE_IOERR_FSTAT;
        fn lock => xLock(level: c_int) or ffi::SQLITE_IOERR_LOCK;
        fn unlock => xUnlock(level: c_int) or ffi::SQLITE_IOERR_UNLOCK;
        fn check_reserved_lock => xCheckReservedLock(out: *mut c_int)
            or ffi::SQLITE_IOERR_CHECKRESERVEDLOCK;
        fn file_control => xFileControl(op: c_int, arg: *mut c_void) or ffi::SQLITE_NOTFOUND;
        fn sector_size => xSectorSize() or 4096;
        fn device_characteristics => xDeviceCharacteristics() or 0;
        fn shm_map => xShmMap(region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void)
            or ffi::SQLITE_IOERR_SHMMAP;
        fn shm_unmap => xShmUnmap(delete: c_int) or ffi::SQLITE_OK;
        fn unfetch => xUnfetch(offset: i64, page: *mut c_void) or ffi::SQLITE_OK;
    }

    pub unsafe extern "C" fn fetch(
        file: *mut ffi::sqlite3_file,
        offset: i64,
        amount: c_int,
        out: *mut *mut c_void,
    ) -> c_int {
        unsafe {
            let inner = DbFile::inner(file);
            match methods(inner).xFetch {
                Some(f) => f(inner, offset, amount, out),
                None => {
                    *out = std::ptr::null_mut();
                    ffi::SQLITE_OK
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags, params};
    use std::path::Path;

    /// A connection through this VFS, as `schema::open_writer` makes one.
    fn gathering(path: &Path, synchronous: &str) -> Connection {
        let conn =
            Connection::open_with_flags_and_vfs(path, OpenFlags::default(), register().unwrap())
                .unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn.execute_batch(&format!(
            "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = {synchronous};"
        ))
        .unwrap();
        conn
    }

    fn plain_reader(path: &Path) -> Connection {
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn check_integrity(path: &Path) {
        let fresh = Connection::open(path).unwrap();
        let verdict: String = fresh
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(verdict, "ok");
    }

    /// Commits of many pages each, so runs reach `RUN_MAX` and the WAL is checkpointed
    /// and restarted many times over; a reader on the default VFS sees every commit as
    /// soon as it returns, whatever `synchronous` is (FULL: the commit's sync writes the
    /// run out; NORMAL: the release of the write lock does, and before it, for a reader
    /// on another thread, the WAL index's barrier).
    fn a_reader_sees_every_commit_at_once(synchronous: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let writer = gathering(&path, synchronous);
        writer
            .execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            .unwrap();
        let reader = plain_reader(&path);
        let mut stored = 0;
        for commit in 0..300i64 {
            let tx = writer.unchecked_transaction().unwrap();
            let rows = 1 + commit % 40;
            for i in 0..rows {
                tx.execute(
                    "INSERT INTO t (k, v) VALUES (?1, randomblob(700))",
                    params![commit * 1000 + i],
                )
                .unwrap();
            }
            tx.commit().unwrap();
            stored += rows;
            assert_eq!(count(&reader), stored, "after commit {commit}");
        }
        drop(writer);
        check_integrity(&path);
    }

    #[test]
    fn a_reader_sees_every_commit_at_once_with_synchronous_full() {
        a_reader_sees_every_commit_at_once("FULL");
    }

    #[test]
    fn a_reader_sees_every_commit_at_once_with_synchronous_normal() {
        a_reader_sees_every_commit_at_once("NORMAL");
    }

    /// A transaction that spilled frames to the WAL and was rolled back, then another
    /// connection's commit at the same place in the WAL, then the first connection's next
    /// commit: the rolled-back frames must not reach the file after the other commit,
    /// where they would overwrite its frames. Spills of many sizes, so that some are
    /// smaller than a run and some larger.
    #[test]
    fn frames_of_a_rolled_back_transaction_never_overwrite_a_later_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let first = gathering(&path, "FULL");
        first
            .execute_batch(
                "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);
                 PRAGMA cache_size = 20; PRAGMA cache_spill = 20;",
            )
            .unwrap();
        let second = gathering(&path, "FULL");
        let mut expected = Vec::new();
        for round in 0..40i64 {
            let tx = first.unchecked_transaction().unwrap();
            // From a few pages to about 70: more than the cache holds, so frames spill
            // into the WAL before the rollback.
            for i in 0..(5 + round * 3) {
                tx.execute(
                    "INSERT INTO t (k, v) VALUES (?1, randomblob(1200))",
                    params![1_000_000 + round * 1000 + i],
                )
                .unwrap();
            }
            tx.rollback().unwrap();
            second
                .execute(
                    "INSERT INTO t (k, v) VALUES (?1, randomblob(1200))",
                    params![round],
                )
                .unwrap();
            first
                .execute(
                    "INSERT INTO t (k, v) VALUES (?1, randomblob(1200))",
                    params![100 + round],
                )
                .unwrap();
            expected.extend([round, 100 + round]);
        }
        drop(first);
        drop(second);
        check_integrity(&path);
        let reader = plain_reader(&path);
        let keys: Vec<i64> = reader
            .prepare("SELECT k FROM t ORDER BY k")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        expected.sort();
        assert_eq!(keys, expected);
    }

    /// Files that are neither a database nor its WAL (here a temporary table's file) are
    /// the default VFS's own, and a database reopened after a close finds its WAL again.
    #[test]
    fn temporary_files_and_reopening_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        for round in 0..3i64 {
            let conn = gathering(&path, "FULL");
            conn.execute_batch(
                "PRAGMA temp_store = FILE;
                 CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);
                 CREATE TEMP TABLE scratch (x);",
            )
            .unwrap();
            conn.execute("INSERT INTO scratch SELECT randomblob(1000) FROM t", [])
                .unwrap();
            conn.execute("INSERT INTO t VALUES (?1, randomblob(10))", params![round])
                .unwrap();
            assert_eq!(count(&conn), round + 1);
        }
        check_integrity(&path);
    }
}
