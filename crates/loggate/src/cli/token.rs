//! `loggate token new`: a fresh bearer token, printed once, and the
//! `[[principal]]` block with its hash, ready to paste into `--auth-file`.

use std::io::Write as _;
use std::process::ExitCode;

use crate::auth::{check_principal_name, new_token, TokenHash};
use crate::config::TokenNewArgs;
use crate::record::Scope;

use super::Error;

pub fn new(args: &TokenNewArgs) -> Result<ExitCode, Error> {
    // The same checks the auth file gets, so the block always loads.
    check_principal_name(&args.name).map_err(|e| Error::Usage(format!("--name: {e}")))?;
    let log = Scope::parse(&args.log).map_err(|e| Error::Usage(format!("--log {e}")))?;
    let tail = Scope::parse(&args.tail).map_err(|e| Error::Usage(format!("--tail {e}")))?;
    let token = new_token().map_err(|e| Error::System(format!("no random source: {e}")))?;
    let block = principal_block(&args.name, &TokenHash::of(&token), &log, &tail);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# The token, shown once: give it to the caller (authorization: Bearer <token>)."
    )?;
    writeln!(out, "# {token}")?;
    writeln!(
        out,
        "# The principal, for --auth-file (only the token's hash is kept):"
    )?;
    out.write_all(block.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn principal_block(name: &str, hash: &TokenHash, log: &Scope, tail: &Scope) -> String {
    let list = |scope: &Scope| {
        scope
            .globs()
            .iter()
            .map(|glob| format!("{:?}", glob.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[principal]]\nname = {name:?}\ntoken_sha256 = \"{}\"\nlog = [{}]\ntail = [{}]\n",
        hash.to_hex(),
        list(log),
        list(tail)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principals;

    #[test]
    fn the_printed_block_loads_and_names_the_token() {
        let log = Scope::parse(&["checkout", "checkout-*"]).expect("valid");
        let tail = Scope::parse(&["*"]).expect("valid");
        let block = principal_block("checkout-prod", &TokenHash::of("t0k"), &log, &tail);
        let principals = Principals::parse(&block).expect("the block is a valid auth file");
        let principal = principals.by_token(&TokenHash::of("t0k")).expect("found");
        assert_eq!(principal.name, "checkout-prod");
        assert!(principal.log.allows("checkout-eu"));
        assert!(principal.tail.is_everything());
    }
}
