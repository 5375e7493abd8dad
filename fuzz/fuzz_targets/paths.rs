//! Request paths: the canonicalizer either refuses a path, leaves it alone, or rewrites it to
//! `/v2/<one segment>/...` whose name decodes to a valid repository name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::api::paths::canonical_path;
use wharf::oci::RepoName;

fuzz_target!(|input: &str| {
    if let Ok(Some(path)) = canonical_path(input) {
        let rest = path.strip_prefix("/v2/").expect("canonical paths start with /v2/");
        let (name, _) = rest.split_once('/').expect("a name, then the endpoint");
        assert!(RepoName::parse(&name.replace("%2F", "/")).is_ok(), "{path}");
    }
});
