//! Keyboard navigation of search results, driven in the browser: the
//! proxy adds a script that presses keys (`KeyboardEvent`s dispatched to
//! the focused element, which is what the page's handlers see) and
//! records where the focus went.

use crate::browser::Browser;
use crate::dom::between;

/// On a search page listing exactly `results` (in order): ArrowDown from
/// the box enters the list, ArrowDown / ArrowUp / Home / End move between
/// the results' links, ArrowUp from the first goes back to the box, and
/// the focused result is a link (Enter opens it) to its package.
pub async fn assert_results_take_the_keyboard(
    browser: &Browser,
    search_url: &str,
    results: [&str; 2],
    first_href: &str,
) {
    let url = format!("{search_url}&__keys=1");
    let dom = browser
        .dom_when(&url, |dom| dom.contains("data-focus-trail="))
        .await;
    let trail = between(&dom, "data-focus-trail=\"", "\"")
        .unwrap_or_else(|| panic!("the key script did not run: {dom}"));
    let [a, b] = results;
    let expected = [
        "#search-q",
        a,
        b,
        b,
        a,
        b,
        a,
        "#search-q",
        &format!("enter:{first_href}"),
    ]
    .join("|");
    assert_eq!(trail, expected, "focus moved as {trail}");
    // Tab order: the results are links, in the list's order, none taken
    // out of the tab order.
    assert!(
        !dom.contains("tabindex=\"-1\""),
        "a result left the tab order"
    );
}
