// cairn web catalogue: the private-registry token, and small conveniences.
//
// On a private registry the server answers a page without credentials
// with a token form. The token is kept in this tab's sessionStorage only
// (never a cookie, never localStorage) and the page is fetched again with
// `Authorization: Bearer`; the server renders only what the token may read.
(function () {
  "use strict";
  var KEY = "cairn.token";

  function storedToken() {
    try { return sessionStorage.getItem(KEY); } catch (e) { return null; }
  }
  function storeToken(value) {
    try {
      if (value) { sessionStorage.setItem(KEY, value); } else { sessionStorage.removeItem(KEY); }
    } catch (e) { /* storage disabled: the token lives for this page only */ }
  }

  // Fetches the current page with the token and shows its content.
  function loadWith(token) {
    document.body.classList.add("loading");
    return fetch(location.href, {
      headers: { "Authorization": "Bearer " + token, "Accept": "text/html" },
      credentials: "omit",
      cache: "no-store"
    }).then(function (response) {
      return response.text().then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var main = doc.getElementById("main");
        document.body.classList.remove("loading");
        if (!main) { throw new Error("the registry answered " + response.status); }
        if (doc.getElementById("token-form")) {
          // The token was refused: say why and ask again.
          storeToken(null);
          var message = doc.getElementById("token-message");
          showTokenError(message ? message.textContent : "the token was refused");
          return;
        }
        document.getElementById("main").replaceWith(document.adoptNode(main));
        document.title = doc.title;
        var forget = document.getElementById("forget-token");
        if (forget) { forget.hidden = false; }
        document.dispatchEvent(new CustomEvent("cairn:page"));
      });
    }).catch(function (error) {
      document.body.classList.remove("loading");
      showTokenError(String(error && error.message || error));
    });
  }

  function showTokenError(text) {
    var box = document.getElementById("token-error");
    if (box) { box.textContent = text; }
  }

  function start() {
    var form = document.getElementById("token-form");
    var forget = document.getElementById("forget-token");
    if (forget) {
      forget.hidden = !storedToken();
      forget.addEventListener("click", function () {
        storeToken(null);
        location.reload();
      });
    }
    if (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var input = document.getElementById("token-input");
        var token = input.value.trim();
        input.value = "";
        if (!token) { return; }
        storeToken(token);
        loadWith(token);
      });
      var token = storedToken();
      if (token) { loadWith(token); }
    }
    // "/" focuses the search box, as on most catalogues.
    document.addEventListener("keydown", function (event) {
      var target = event.target;
      var typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA");
      if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
        var box = document.getElementById("search-q") || document.getElementById("home-q") ||
          document.getElementById("quick-q");
        if (box) { event.preventDefault(); box.focus(); }
      }
    });
  }

  // Keyboard navigation of result lists (`data-keynav`): from the search
  // box, ArrowDown enters the list; in it, ArrowDown / ArrowUp move between
  // the results' main links (ArrowUp from the first goes back to the box),
  // Home / End go to the first / last, and Enter opens the focused link
  // (links do that themselves). Tab walks the same links in order.
  function resultLinks() {
    var list = document.querySelector("[data-keynav]");
    return list ? Array.prototype.slice.call(list.querySelectorAll("a.result-link")) : [];
  }
  function searchBox() {
    return document.getElementById("search-q") || document.getElementById("quick-q");
  }
  function onResultKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.shiftKey) { return; }
    var links = resultLinks();
    if (!links.length) { return; }
    var target = event.target;
    var at = links.indexOf(target);
    var box = searchBox();
    var next = null;
    if (at === -1) {
      if (target === box && event.key === "ArrowDown") { next = links[0]; }
    } else if (event.key === "ArrowDown") {
      next = links[Math.min(at + 1, links.length - 1)];
    } else if (event.key === "ArrowUp") {
      next = at === 0 ? box : links[at - 1];
    } else if (event.key === "Home") {
      next = links[0];
    } else if (event.key === "End") {
      next = links[links.length - 1];
    }
    if (next) {
      event.preventDefault();
      next.focus();
    }
  }
  document.addEventListener("keydown", onResultKey);

  window.cairnToken = storedToken;
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
