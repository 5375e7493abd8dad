//! Token scopes (`repository:name:pull,push`): a parsed scope prints as a string that parses
//! back to the same scope, so what is granted is exactly what is written in the token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::auth::scope::Scope;

fuzz_target!(|input: &str| {
    if let Ok(scopes) = Scope::parse_list(input) {
        for scope in scopes {
            let printed = scope.to_string();
            assert_eq!(Scope::parse(&printed).ok().as_ref(), Some(&scope), "{printed}");
        }
    }
});
