//! Link the module with immediate binding (`-z now`): every Envoy callback
//! it imports is resolved when Envoy loads it, so an Envoy that lacks one
//! refuses the module at load ("undefined symbol") instead of crashing on
//! the first call.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    println!("cargo:rerun-if-changed=build.rs");
}
