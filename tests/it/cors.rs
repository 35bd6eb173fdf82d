//! CORS for browser front ends on other origins, and `--allowed-origins`.
