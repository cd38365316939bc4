//! Helpers for the workspace's tests: hidden from the docs, public so that every crate's unit
//! and integration tests share one of each.

mod mutate;
pub use mutate::{Mutator, fuzz_cases};

/// Panics unless `msg` (an error message) contains every one of `parts`, naming what is
/// missing. Errors in this project name the file, the key and the problem; tests check that.
#[doc(hidden)]
#[track_caller]
pub fn assert_mentions(msg: &str, parts: &[&str]) {
    let missing: Vec<&str> = parts.iter().copied().filter(|p| !msg.contains(p)).collect();
    assert!(missing.is_empty(), "{msg:?} does not mention {missing:?}");
}

#[cfg(test)]
mod tests {
    use super::assert_mentions;

    #[test]
    fn passes_when_all_are_there_and_names_the_missing_part() {
        assert_mentions("line.toml: key `x`: bad", &["line.toml", "`x`"]);
        let e = std::panic::catch_unwind(|| assert_mentions("line.toml", &["line", "key"]))
            .expect_err("must panic");
        let text = e.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(text.contains("[\"key\"]"), "{text}");
    }
}
