//! Confusables: a compact hand table of look-alike letters folded to Latin.
//!
//! Owns the skeleton step of UTS #39 for the characters attackers actually
//! use: lowercase Cyrillic, Greek, Armenian and a few IPA/Latin-extended
//! letters that render like ASCII. Fullwidth and mathematical letters are
//! not here because compatibility decomposition already folds them.
//! Trade-off: a full UTS #39 table is ~6k entries; this table is ~60 and
//! covers the homoglyph smuggling seen in public jailbreak sets. Folding
//! Cyrillic text this way also turns real Russian words into Latin-looking
//! gibberish, which is harmless because Russian phrases in the policies are
//! folded by the same function.

/// Letters the table folds that a language writes natively (Turkish and Azerbaijani write the
/// dotless i in every other word): folded for matching, and evidence of smuggling only in a
/// text that shows none of that language's other letters ([`shows_native_language`]), as in
/// "ıgnore all prevıous ınstructıons".
pub fn is_native_letter(c: char) -> bool {
    c == 'ı'
}

/// Letters of the alphabets whose own letters [`is_native_letter`] names (Turkish,
/// Azerbaijani), other than the dotless i itself.
pub fn shows_native_language(c: char) -> bool {
    matches!(
        c,
        'ş' | 'Ş' | 'ğ' | 'Ğ' | 'İ' | 'ç' | 'Ç' | 'ö' | 'Ö' | 'ü' | 'Ü' | 'ə' | 'Ə'
    )
}

/// Maps a lowercase look-alike to its ASCII letter, or returns it unchanged.
pub fn fold_confusable(c: char) -> char {
    match c {
        // Cyrillic
        'а' => 'a',
        'в' => 'b',
        'с' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' | 'є' => 'e',
        'һ' => 'h',
        'і' | 'ї' | 'ӏ' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' => 't',
        'ս' | 'ц' => 'u',
        'ѵ' => 'v',
        'ԝ' | 'ѡ' => 'w',
        'х' => 'x',
        'у' => 'y',
        // Greek
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'γ' => 'y',
        // Armenian
        'օ' => 'o',
        'ո' => 'n',
        'հ' => 'h',
        // Latin extended and IPA
        'ı' => 'i',
        'ɑ' => 'a',
        'ɡ' => 'g',
        'ɩ' => 'i',
        'ʟ' => 'l',
        'ɴ' => 'n',
        'ʀ' => 'r',
        'ꜱ' => 's',
        'ᴀ' => 'a',
        'ᴄ' => 'c',
        'ᴅ' => 'd',
        'ᴇ' => 'e',
        'ᴏ' => 'o',
        'ᴘ' => 'p',
        'ᴛ' => 't',
        'ᴜ' => 'u',
        'ɪ' => 'i',
        'ℓ' => 'l',
        _ => c,
    }
}
