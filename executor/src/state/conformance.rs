//! The conformance suite every [`StateBackend`] implementation must pass.
//!
//! It works under the `conformance/` prefix of the backend and expects that
//! prefix to be empty at the start.

use super::{StateBackend, StateError};

/// Exercises the [`StateBackend`] contract; panics on the first violation.
pub(crate) fn backend_conformance(backend: &dyn StateBackend) {
    assert!(!backend.describe().is_empty(), "describe() is empty");
    missing_things(backend);
    put_get_overwrite(backend);
    listing(backend);
    deletion(backend);
    invalid_paths(backend);
    concurrent_writers_and_atomic_visibility(backend);
}

fn missing_things(b: &dyn StateBackend) {
    assert_eq!(b.get("conformance/missing/file").unwrap(), None);
    assert!(b.list("conformance/missing").unwrap().is_empty());
    b.delete("conformance/missing/file").unwrap();
}

fn put_get_overwrite(b: &dyn StateBackend) {
    // Parent directories are created on demand, several levels deep.
    b.put_atomic("conformance/put/a/b/c/file", b"hello")
        .unwrap();
    assert_eq!(
        b.get("conformance/put/a/b/c/file").unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    // Overwrite with shorter, then empty, then large contents.
    b.put_atomic("conformance/put/a/b/c/file", b"hi").unwrap();
    assert_eq!(
        b.get("conformance/put/a/b/c/file").unwrap().as_deref(),
        Some(&b"hi"[..])
    );
    b.put_atomic("conformance/put/a/b/c/file", b"").unwrap();
    assert_eq!(
        b.get("conformance/put/a/b/c/file").unwrap().as_deref(),
        Some(&b""[..])
    );
    let large: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    b.put_atomic("conformance/put/large", &large).unwrap();
    assert!(b.get("conformance/put/large").unwrap().unwrap() == large);
    // Overwriting leaves exactly one visible file: no temporary leftovers.
    assert_eq!(b.list("conformance/put/a/b/c").unwrap(), ["file"]);
}

fn listing(b: &dyn StateBackend) {
    // Written out of order; zero-padded names list in numeric order.
    for name in [
        "00000000000000000010.delta",
        "00000000000000000002.snapshot",
        "00000000000000000002.delta",
        "00000000000000000100.delta",
    ] {
        b.put_atomic(&format!("conformance/list/{name}"), name.as_bytes())
            .unwrap();
    }
    b.put_atomic("conformance/list/nested/inner", b"x").unwrap();
    // Only direct children that are files, sorted; no temporary names.
    assert_eq!(
        b.list("conformance/list").unwrap(),
        [
            "00000000000000000002.delta",
            "00000000000000000002.snapshot",
            "00000000000000000010.delta",
            "00000000000000000100.delta",
        ]
    );
    assert_eq!(b.list("conformance/list/nested").unwrap(), ["inner"]);
    let root = b.list("").unwrap();
    assert!(
        root.iter().all(|n| !n.starts_with('.')),
        "root listing shows temporary names: {root:?}"
    );
}

fn deletion(b: &dyn StateBackend) {
    b.put_atomic("conformance/del/x", b"1").unwrap();
    b.put_atomic("conformance/del/y", b"2").unwrap();
    b.delete("conformance/del/x").unwrap();
    assert_eq!(b.get("conformance/del/x").unwrap(), None);
    assert_eq!(b.list("conformance/del").unwrap(), ["y"]);
    // Deleting again is fine.
    b.delete("conformance/del/x").unwrap();
    // A deleted name can be written again.
    b.put_atomic("conformance/del/x", b"3").unwrap();
    assert_eq!(
        b.get("conformance/del/x").unwrap().as_deref(),
        Some(&b"3"[..])
    );
}

fn invalid_paths(b: &dyn StateBackend) {
    let is_invalid = |r: Result<(), StateError>, what: &str| {
        assert!(
            matches!(r, Err(StateError::InvalidPath { .. })),
            "{what}: expected InvalidPath, got {r:?}"
        );
    };
    for bad in [
        "",
        "/abs/olute",
        "conformance/../escape",
        "conformance//x",
        "conformance/./x",
        "conformance/x/",
    ] {
        is_invalid(b.put_atomic(bad, b"x"), bad);
        is_invalid(b.get(bad).map(drop), bad);
        is_invalid(b.delete(bad), bad);
    }
    // Names starting with '.' are reserved for temporary files.
    is_invalid(b.put_atomic("conformance/.hidden", b"x"), ".hidden");
    is_invalid(b.list("../up").map(drop), "list ../up");
    assert_eq!(b.list("conformance").unwrap(), Vec::<String>::new());
}

fn concurrent_writers_and_atomic_visibility(b: &dyn StateBackend) {
    const ROUNDS: usize = 40;
    let old = vec![b'o'; 200_000];
    let new = vec![b'n'; 100_000];
    b.put_atomic("conformance/atomic/file", &old).unwrap();
    std::thread::scope(|s| {
        // One writer flips the file between two contents of different sizes.
        s.spawn(|| {
            for i in 0..ROUNDS {
                let bytes = if i % 2 == 0 { &new } else { &old };
                b.put_atomic("conformance/atomic/file", bytes).unwrap();
            }
        });
        // Other writers create distinct files in the same directory.
        for w in 0..2 {
            s.spawn(move || {
                for i in 0..ROUNDS {
                    let path = format!("conformance/atomic/w{w}-{i:03}");
                    b.put_atomic(&path, path.as_bytes()).unwrap();
                }
            });
        }
        // A reader must only ever see one of the complete contents.
        s.spawn(|| {
            for _ in 0..ROUNDS {
                let got = b.get("conformance/atomic/file").unwrap().unwrap();
                assert!(
                    got == old || got == new,
                    "observed a partial write of {} bytes",
                    got.len()
                );
                let names = b.list("conformance/atomic").unwrap();
                assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
            }
        });
    });
    let names = b.list("conformance/atomic").unwrap();
    assert_eq!(names.len(), 1 + 2 * ROUNDS, "{names:?}");
    assert_eq!(
        b.get("conformance/atomic/w1-007").unwrap().as_deref(),
        Some(&b"conformance/atomic/w1-007"[..])
    );
}
