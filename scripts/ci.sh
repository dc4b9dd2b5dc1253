# Sourced by the test scripts: the one rule for "is this CI?" in shell (the Rust tests have
# theirs in tests/kernels/common.rs, `ci()`). CI services set CI to true, 1, yes, ...: any
# value but empty, 0 or false (in any case) means CI, where a missing tool fails the run
# instead of skipping it.
is_ci() {
  case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
    "" | 0 | false) return 1 ;;
    *) return 0 ;;
  esac
}
