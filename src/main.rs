//! The `authd` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    authd::cli::main()
}
