//! When two spellings of an email address are one account, and which
//! spellings a new account may not use.
//!
//! Two addresses are one account when their keys are equal. The key of the
//! local part (before the `@`) is its NFKC_Casefold form: compatibility
//! composition, full case folding, default-ignorable code points dropped,
//! repeated until it no longer changes, which is how Unicode derives that
//! property. So `José` typed composed or decomposed, `ＢＯＢ` in fullwidth
//! letters, `ΟΔΟΣ` and `οδος` (final sigma), `straße` and `strasse`, and
//! `bob` with a zero-width space inside are each one key. Turkish dotless
//! `ı` and dotted `İ` are folded to `i` on top (case folding alone keeps
//! them apart, and they read as `i`). The key of the domain is its UTS 46
//! ASCII form (IDNA: `bücher.example` and `xn--bcher-kva.example` are one
//! domain), through the `idna` crate; an ASCII domain is only lowercased.
//!
//! A new address ([`refusal`]) is refused when it holds what only serves to
//! deceive: invisible (default-ignorable) or direction-changing (bidi
//! control) characters, code points Unicode has not assigned or leaves to
//! private use, a part whose letters mix scripts beyond what UTS 39 calls
//! "highly restrictive" (Latin with Cyrillic is refused; Latin with
//! Japanese, Chinese or Korean scripts is not), or a form that only its
//! normalisation turns into something else that the shape rules refuse
//! (a fullwidth `＠`, a trailing fullwidth dot). Look-alikes within one
//! script (Cyrillic `а` alone, Latin `rn` for `m`) are not folded: a key
//! that merged every confusable pair (UTS 39 skeletons) would also merge
//! distinct real mailboxes. Addresses stored before these rules are read
//! as they are: the key is computed leniently and never refuses.

use std::borrow::Cow;

use icu_casemap::CaseMapper;
use icu_normalizer::ComposingNormalizer;
use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint, GeneralCategory, Script};
use icu_properties::{CodePointMapData, CodePointSetData};

/// Why a new address's spelling is refused (its shape was checked before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An invisible or direction-changing character.
    Invisible,
    /// A code point not assigned by Unicode, or for private use.
    Unassigned,
    /// Letters of scripts that do not belong together.
    MixedScripts,
    /// Normalised, the address is no longer of an address's shape.
    Shape,
}

/// The key under which `local@domain` is one account. Never fails: a
/// domain that has no UTS 46 form (only possible for addresses stored
/// before these rules, since [`refusal`] refuses it) keys as its folded
/// text.
pub fn key(local: &str, domain: &str) -> String {
    let domain = domain_key(domain);
    let mut key = local_key(local);
    key.push('@');
    key.push_str(&domain);
    key
}

/// The key of a local part: NFKC_Casefold, then `ı` and `i̇` as `i`.
fn local_key(local: &str) -> String {
    if local.is_ascii() {
        // The common case: ASCII holds no default-ignorable code point, is
        // its own NFKC form and folds by lowercasing.
        return local.to_ascii_lowercase();
    }
    let mut text = local.to_owned();
    // NFKC_Casefold is closed after a few rounds; four is more than any
    // code point needs, and bounds the work whatever arrives.
    for _ in 0..4 {
        let next = casefold_round(&text);
        if next == text {
            break;
        }
        text = next;
    }
    text
}

/// One round of NFKC_Casefold: NFKC, full case folding, NFKC, without
/// default-ignorable code points; dotless and dotted i read as `i`.
fn casefold_round(text: &str) -> String {
    let nfkc = ComposingNormalizer::new_nfkc();
    let composed = nfkc.normalize(text);
    let folded = CaseMapper::new().fold_string(&composed);
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    let kept: String = nfkc
        .normalize(&folded)
        .chars()
        .filter(|&c| !ignorable.contains(c))
        .map(|c| if c == '\u{131}' { 'i' } else { c })
        .collect();
    // `İ` folds to `i` + combining dot above: the dot goes too.
    if kept.contains("i\u{307}") {
        kept.replace("i\u{307}", "i")
    } else {
        kept
    }
}

/// The key of a domain: its UTS 46 ASCII form.
fn domain_key(domain: &str) -> String {
    if domain.is_ascii() {
        return domain.to_ascii_lowercase();
    }
    match to_ascii(domain) {
        Ok(ascii) => ascii.into_owned(),
        Err(_) => local_key(domain),
    }
}

/// UTS 46 ToASCII without the DNS restrictions on ASCII characters (the
/// shape rules decide those), with hyphens anywhere and no length limit.
fn to_ascii(domain: &str) -> Result<Cow<'_, str>, idna::Errors> {
    use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
    Uts46::new().to_ascii(
        domain.as_bytes(),
        AsciiDenyList::EMPTY,
        Hyphens::Allow,
        DnsLength::Ignore,
    )
}

/// Whether `c` is invisible (default-ignorable) or changes the direction
/// of text (bidi control).
pub fn is_invisible(c: char) -> bool {
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || CodePointSetData::new::<BidiControl>().contains(c)
}

/// Why a new address `local@domain`, already of an address's shape, may
/// not be registered, if it may not.
pub fn refusal(local: &str, domain: &str) -> Option<Refusal> {
    if local.is_ascii() && domain.is_ascii() {
        return None;
    }
    let category = CodePointMapData::<GeneralCategory>::new();
    for c in local.chars().chain(domain.chars()) {
        if is_invisible(c) {
            return Some(Refusal::Invisible);
        }
        if matches!(
            category.get(c),
            GeneralCategory::Unassigned | GeneralCategory::PrivateUse | GeneralCategory::Surrogate
        ) {
            return Some(Refusal::Unassigned);
        }
    }
    if !scripts_fit(local) || domain.split('.').any(|label| !scripts_fit(label)) {
        return Some(Refusal::MixedScripts);
    }
    if !domain.is_ascii() && to_ascii(domain).is_err() {
        return Some(Refusal::Shape);
    }
    let local_key = local_key(local);
    let domain_key = domain_key(domain);
    let bad = |c: char| c == '@' || c.is_whitespace() || c.is_control();
    if local_key.is_empty()
        || local_key.chars().any(bad)
        || domain_key.chars().any(bad)
        || domain_key.starts_with('.')
        || domain_key.ends_with('.')
        || domain_key.contains("..")
    {
        return Some(Refusal::Shape);
    }
    None
}

/// Whether the letters of `text` keep to one script, or to one of the
/// combinations UTS 39's "highly restrictive" level allows: Latin with
/// Han and Japanese kana, with Han and Bopomofo, or with Han and Hangul.
/// Characters common to all scripts (digits, punctuation) and inherited
/// ones (combining marks) do not count.
fn scripts_fit(text: &str) -> bool {
    let scripts = CodePointMapData::<Script>::new();
    let mut seen: Vec<Script> = Vec::new();
    for c in text.chars() {
        let script = scripts.get(c);
        if script != Script::Common && script != Script::Inherited && !seen.contains(&script) {
            seen.push(script);
        }
    }
    if seen.len() <= 1 {
        return true;
    }
    let allowed: [&[Script]; 3] = [
        &[
            Script::Latin,
            Script::Han,
            Script::Hiragana,
            Script::Katakana,
        ],
        &[Script::Latin, Script::Han, Script::Bopomofo],
        &[Script::Latin, Script::Han, Script::Hangul],
    ];
    allowed
        .iter()
        .any(|set| seen.iter().all(|script| set.contains(script)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(address: &str) -> String {
        let (local, domain) = address.split_once('@').unwrap();
        key(local, domain)
    }

    #[test]
    fn look_alikes_share_a_key() {
        let pairs = [
            ("josé@example.com", "jose\u{301}@example.com"),
            ("bob@example.com", "ＢＯＢ@example.com"),
            ("bob@example.com", "bo\u{200b}b@example.com"),
            ("bob@example.com", "bob\u{200d}@example.com"),
            ("bob@example.com", "b\u{ad}ob@example.com"),
            ("bob@example.com", "\u{2060}bob@example.com"),
            ("bob@example.com", "bob\u{feff}@example.com"),
            ("bob@example.com", "bob\u{202e}@example.com"),
            ("οδος@example.com", "ΟΔΟΣ@example.com"),
            ("οδος@example.com", "οδοσ@example.com"),
            ("tim@example.com", "tım@example.com"),
            ("tim@example.com", "TİM@example.com"),
            ("strasse@example.com", "straße@example.com"),
            ("carol@xn--bcher-kva.example", "carol@bücher.example"),
            ("carol@xn--bcher-kva.example", "carol@BÜCHER.example"),
            ("carol@xn--bcher-kva.example", "carol@XN--BCHER-KVA.example"),
            ("dave@example.com", "dave@ｅｘａｍｐｌｅ.com"),
        ];
        for (a, b) in pairs {
            assert_eq!(key_of(a), key_of(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn different_addresses_keep_different_keys() {
        let pairs = [
            ("bob@example.com", "bob@example.org"),
            ("arnold@example.com", "amold@example.com"),
            ("a.b@example.com", "ab@example.com"),
            // Cyrillic а alone is its own script: not folded to Latin a.
            ("ana@example.com", "\u{430}n\u{430}@example.com"),
        ];
        for (a, b) in pairs {
            assert_ne!(key_of(a), key_of(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn plain_ascii_keys_are_lowercase() {
        assert_eq!(key_of("Bob.Smith+x@Example.COM"), "bob.smith+x@example.com");
        assert_eq!(key_of("a_b#c@d_e#f"), "a_b#c@d_e#f");
    }

    #[test]
    fn deceptive_new_addresses_are_refused() {
        let cases = [
            ("bo\u{200b}b", "example.com", Refusal::Invisible),
            ("bob\u{202e}", "example.com", Refusal::Invisible),
            ("bob", "exa\u{200d}mple.com", Refusal::Invisible),
            ("b\u{ad}ob", "example.com", Refusal::Invisible),
            ("bob\u{378}", "example.com", Refusal::Unassigned),
            ("bob\u{e000}", "example.com", Refusal::Unassigned),
            ("p\u{430}ypal", "example.com", Refusal::MixedScripts),
            ("paypal", "ex\u{430}mple.com", Refusal::MixedScripts),
            ("bob＠x", "example.com", Refusal::Shape),
            ("bob", "example.com．", Refusal::Shape),
        ];
        for (local, domain, want) in cases {
            assert_eq!(refusal(local, domain), Some(want), "{local:?}@{domain:?}");
        }
    }

    #[test]
    fn ordinary_new_addresses_pass() {
        let cases = [
            ("bob", "example.com"),
            ("josé", "example.com"),
            ("jose\u{301}", "example.com"),
            ("ΟΔΟΣ", "example.com"),
            ("tım", "example.com"),
            ("пример", "пример.рф"),
            ("山田taro", "example.jp"),
            ("やまだ", "例え.jp"),
            ("carol", "bücher.example"),
            ("ＢＯＢ", "example.com"),
        ];
        for (local, domain) in cases {
            assert_eq!(refusal(local, domain), None, "{local:?}@{domain:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A key is its own key, and lowercasing an address first (the key
        /// rule before these) never changes it: the two facts the store
        /// migration relies on to keep old and new keys apart.
        #[test]
        fn keys_are_stable(local in "\\PC{1,12}", domain in "[a-zA-Z0-9\u{e9}\u{130}\u{131}\u{ff21}.-]{1,12}") {
            let once = local_key(&local);
            prop_assert_eq!(local_key(&once), once.clone());
            prop_assert_eq!(local_key(&local.to_lowercase()), once);
            if to_ascii(&domain).is_ok() {
                let once = domain_key(&domain);
                prop_assert_eq!(domain_key(&once), once.clone());
                prop_assert_eq!(domain_key(&domain.to_lowercase()), once);
            }
        }
    }
}
