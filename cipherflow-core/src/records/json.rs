//! A walk over the fields of one JSON object whose text serde_json has already checked is
//! well-formed. Knowing that, finding where a key or a value ends takes one cheap pass with no
//! error paths, so each record is checked by serde_json once and split here, instead of being
//! parsed a second time by serde_json to reach its fields.

/// The fields of a well-formed JSON object, in order: `(key, value)`, where `key` is the raw
/// key text with its quotes (escapes not decoded) and `value` the value's raw JSON text.
pub(crate) struct Fields<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Fields<'a> {
    /// The fields of `text`, which must be one well-formed JSON object (leading and trailing
    /// whitespace allowed): serde_json accepted it.
    pub(crate) fn of(text: &'a str) -> Fields<'a> {
        let b = text.as_bytes();
        let at = skip_ws(b, 0);
        debug_assert_eq!(b.get(at), Some(&b'{'), "a JSON object");
        Fields { text, at: at + 1 }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let b = self.text.as_bytes();
        let mut i = skip_ws(b, self.at);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => {
                self.at = b.len();
                return None;
            }
            _ => {}
        }
        debug_assert_eq!(b[i], b'"', "a key");
        let key_end = string_end(b, i);
        let key = &self.text[i..key_end];
        i = skip_ws(b, key_end);
        debug_assert_eq!(b[i], b':');
        i = skip_ws(b, i + 1);
        let value_end = value_end(b, i);
        let value = &self.text[i..value_end];
        self.at = value_end;
        Some((key, value))
    }
}

/// JSON whitespace: space, tab, line feed, carriage return.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The index just past the string starting with the quote at `i`.
fn string_end(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    loop {
        match b[j] {
            b'"' => return j + 1,
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The index just past the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> usize {
    match b[i] {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        // A number or a literal: up to the next delimiter.
        _ => {
            let mut j = i + 1;
            while !matches!(
                b.get(j),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                j += 1;
            }
            j
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_split_exactly() {
        let text = " {\"a\" : \"x\\\"}\" ,\"b\\u0041\":[1,{\"c\":\"]}\"},[]] , \"d\":-1.5e3,\
                    \"e\":{},\"f\":true,\"g\":null}\n";
        let got: Vec<_> = Fields::of(text).collect();
        assert_eq!(
            got,
            [
                ("\"a\"", "\"x\\\"}\""),
                ("\"b\\u0041\"", "[1,{\"c\":\"]}\"},[]]"),
                ("\"d\"", "-1.5e3"),
                ("\"e\"", "{}"),
                ("\"f\"", "true"),
                ("\"g\"", "null"),
            ]
        );
        assert_eq!(Fields::of("{ }").count(), 0);
        assert_eq!(Fields::of("{}").count(), 0);
    }
}
