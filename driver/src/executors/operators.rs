//! Custom operators and placement: which executors can run a job's tasks.
//!
//! Executors report the custom operators of their binary (`name@version`)
//! when they register. A job whose spec uses custom operators runs only on
//! executors that have all of them: its tasks are never sent to the others
//! (they could not even compile the plan), and a submit that no live
//! executor could run is refused up front.

use super::registry::ExecutorInfo;

/// Whether an executor with `has` can run a job needing `needs`.
pub fn can_run(has: &[String], needs: &[String]) -> bool {
    needs.iter().all(|op| has.contains(op))
}

/// Checks at submit that every operator `needs` is on some live executor;
/// the error names each missing operator and what the live executors have.
pub fn check_available(job: &str, needs: &[String], live: &[ExecutorInfo]) -> Result<(), String> {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|op| !live.iter().any(|e| e.operators.contains(op)))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "job {job} uses custom operator{} {} that no live executor has; live executors: {}. \
         Start executors built with {} (see docs/custom-operators.md), or remove the step",
        if missing.len() == 1 { "" } else { "s" },
        missing.join(", "),
        describe(live),
        if missing.len() == 1 { "it" } else { "them" },
    ))
}

/// `exec-1 (redact@1), exec-2 (no custom operators)`, or `none`.
pub fn describe(executors: &[ExecutorInfo]) -> String {
    if executors.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = executors
        .iter()
        .map(|e| {
            if e.operators.is_empty() {
                format!("{} (no custom operators)", e.id)
            } else {
                format!("{} ({})", e.id, e.operators.join(", "))
            }
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn exec(id: &str, ops: &[&str]) -> ExecutorInfo {
        ExecutorInfo {
            id: id.into(),
            address: format!("{id}:1"),
            slots: 1,
            epoch: 1,
            operators: ops.iter().map(|s| s.to_string()).collect(),
            last_heartbeat: Instant::now(),
            alive: true,
        }
    }

    fn ops(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_executor_runs_a_job_only_with_all_its_operators() {
        assert!(can_run(&[], &[]));
        assert!(can_run(&ops(&["redact@1"]), &[]));
        assert!(can_run(&ops(&["mask@1", "redact@1"]), &ops(&["redact@1"])));
        assert!(!can_run(&ops(&["redact@2"]), &ops(&["redact@1"])));
        assert!(!can_run(&ops(&["redact@1"]), &ops(&["mask@1", "redact@1"])));
    }

    #[test]
    fn a_missing_operator_is_named_with_what_executors_have() {
        let live = [exec("exec-1", &[]), exec("exec-2", &["redact@2"])];
        assert!(check_available("j", &[], &live).is_ok());
        assert!(check_available("j", &ops(&["redact@2"]), &live).is_ok());
        let e = check_available("j", &ops(&["redact@1"]), &live).unwrap_err();
        assert_eq!(
            e,
            "job j uses custom operator redact@1 that no live executor has; live executors: \
             exec-1 (no custom operators), exec-2 (redact@2). Start executors built with it \
             (see docs/custom-operators.md), or remove the step"
        );
        let e = check_available("j", &ops(&["a@1", "b@1"]), &[]).unwrap_err();
        assert!(
            e.starts_with("job j uses custom operators a@1, b@1 that no live executor has; live executors: none."),
            "{e}"
        );
    }
}
