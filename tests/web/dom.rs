//! Reading a dumped DOM: elements, links, attributes, and the
//! accessibility basics every page must meet.

/// The text between `start` (after it) and the next `end`.
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

/// The inner text of the element with `id` (up to its closing `tag`).
pub fn element<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let open = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let from = open + dom[open..].find('>').unwrap() + 1;
    let to = from + dom[from..].find(&format!("</{tag}>")).unwrap();
    &dom[from..to]
}

/// The texts of the links in `html`, in order.
pub fn link_texts(html: &str) -> Vec<String> {
    html.split("<a ")
        .skip(1)
        .filter_map(|a| between(a, ">", "</a>"))
        .map(str::to_owned)
        .collect()
}

/// Every value of attribute `name` in `dom`.
pub fn attributes(dom: &str, name: &str) -> Vec<String> {
    dom.split(&format!(" {name}=\""))
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The basics every page must meet: a language, one `h1` first, no
/// heading level skipped, a label for every visible input, and no link,
/// asset or form outside the registry's path prefix.
pub fn assert_accessible(dom: &str, prefix: &str, page: &str) {
    assert!(dom.contains("<html lang=\"en\""), "{page}: no lang");
    let mut last = 0;
    let mut h1s = 0;
    for part in dom.split("<h").skip(1) {
        let Some(level) = part.chars().next().and_then(|c| c.to_digit(10)) else {
            continue;
        };
        if !part[1..].starts_with([' ', '>']) {
            continue;
        }
        if last == 0 {
            assert_eq!(level, 1, "{page}: the first heading is h{level}");
        }
        assert!(level <= last + 1, "{page}: h{last} is followed by h{level}");
        h1s += usize::from(level == 1);
        last = level;
    }
    assert_eq!(h1s, 1, "{page}: {h1s} h1 headings");
    for input in dom.split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap()];
        if tag.contains("type=\"hidden\"") {
            continue;
        }
        let id = between(tag, "id=\"", "\"").unwrap_or_else(|| panic!("{page}: input without id"));
        assert!(
            dom.contains(&format!("<label for=\"{id}\"")),
            "{page}: input #{id} has no label"
        );
    }
    for url in attributes(dom, "href")
        .into_iter()
        .chain(attributes(dom, "src"))
        .chain(attributes(dom, "action"))
        .chain(attributes(dom, "data-receipt"))
    {
        assert!(
            url.starts_with(&format!("{prefix}/")) || url.starts_with('#') || url.starts_with('?'),
            "{page}: `{url}` is outside {prefix}/"
        );
    }
}
