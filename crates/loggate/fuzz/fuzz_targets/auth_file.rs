//! The `--auth-file` (TOML), read at start and on every reload: parsing
//! must never panic, and every principal it accepts can be looked up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loggate::auth::{check_principal_name, Principals};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(principals) = Principals::parse(text) else {
        return;
    };
    for principal in &principals.0 {
        check_principal_name(&principal.name).expect("accepted names pass the name check");
        if let Some(token) = &principal.token {
            let found = principals.by_token(token).expect("its token finds it");
            assert_eq!(found.name, principal.name);
        }
        if let Some(cn) = &principal.cert_name {
            let found = principals
                .by_cert_names(std::slice::from_ref(cn))
                .expect("its certificate name finds it");
            assert_eq!(found.name, principal.name);
        }
        // Scopes match linearly; any service name must be answerable.
        let _ = principal.log.allows(&principal.name);
        let _ = principal.tail.allows("checkout-prod");
    }
});
