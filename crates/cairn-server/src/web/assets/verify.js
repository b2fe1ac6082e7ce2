// cairn web catalogue: checks, in this browser, what a package page shows.
//
// For every release record on the page it fetches the record's inclusion
// receipt (c2sp.org/tlog-proof: the log entry, its index, the RFC 6962
// inclusion proof and the signed C2SP checkpoint) and checks, with
// WebCrypto only:
//   1. the checkpoint note is signed (Ed25519, c2sp.org/signed-note) by the
//      verifier key pinned in this browser (localStorage), or else by the
//      key this registry serves, which the user can pin on the Log page;
//   2. the receipt's entry is exactly this record of this package log;
//   3. the inclusion proof leads from the entry's leaf hash to the root of
//      the signed checkpoint (RFC 9162, section 2.1.3.2).
// It says plainly whether verification passed or failed, and why.
(function () {
  "use strict";
  var PIN_PREFIX = "cairn.verifierKey.";
  var enc = new TextEncoder();

  function b64decode(text) {
    var raw = atob(text);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }
  function concat(parts) {
    var length = parts.reduce(function (n, p) { return n + p.length; }, 0);
    var out = new Uint8Array(length);
    var at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  }
  function equal(a, b) {
    if (a.length !== b.length) { return false; }
    for (var i = 0; i < a.length; i++) { if (a[i] !== b[i]) { return false; } }
    return true;
  }
  function sha256(bytes) {
    return crypto.subtle.digest("SHA-256", bytes).then(function (d) { return new Uint8Array(d); });
  }
  function uleb128(n) {
    var out = [];
    do {
      var byte = n % 128;
      n = Math.floor(n / 128);
      out.push(n > 0 ? byte | 128 : byte);
    } while (n > 0);
    return new Uint8Array(out);
  }
  function prefixed(text) {
    var bytes = enc.encode(text);
    return concat([uleb128(bytes.length), bytes]);
  }
  function fail(why) { throw new Error(why); }

  // SPEC: c2sp.org/tlog-proof
  function parseReceipt(text) {
    var split = text.indexOf("\n\n");
    if (split < 0) { fail("the receipt has no checkpoint"); }
    var lines = text.slice(0, split).split("\n");
    if (lines.shift() !== "c2sp.org/tlog-proof@v1") { fail("not a c2sp.org/tlog-proof@v1 receipt"); }
    var extra = null;
    if (lines.length && lines[0].indexOf("extra ") === 0) { extra = b64decode(lines.shift().slice(6)); }
    var indexLine = lines.shift() || "";
    if (!/^index [0-9]+$/.test(indexLine)) { fail("the receipt has no index"); }
    var index = Number(indexLine.slice(6));
    var proof = lines.map(function (line) {
      var hash = b64decode(line);
      if (hash.length !== 32) { fail("a proof hash is not 32 bytes"); }
      return hash;
    });
    return { extra: extra, index: index, proof: proof, note: text.slice(split + 2) };
  }

  // SPEC: c2sp.org/signed-note, c2sp.org/tlog-checkpoint
  function parseNote(note) {
    var split = note.indexOf("\n\n");
    if (split < 0) { fail("the checkpoint has no signatures"); }
    var body = note.slice(0, split + 1);
    var lines = body.split("\n");
    if (lines.length < 4) { fail("the checkpoint is too short"); }
    if (!/^[0-9]+$/.test(lines[1])) { fail("the checkpoint size is not a number"); }
    var signatures = note.slice(split + 2).split("\n").filter(function (l) { return l.length; })
      .map(function (line) {
        var m = /^\u2014 (\S+) (\S+)$/.exec(line);
        if (!m) { fail("malformed signature line"); }
        var raw = b64decode(m[2]);
        return { name: m[1], keyId: raw.slice(0, 4), signature: raw.slice(4) };
      });
    var root = b64decode(lines[2]);
    if (root.length !== 32) { fail("the checkpoint root is not 32 bytes"); }
    return { body: body, origin: lines[0], size: Number(lines[1]), root: root, signatures: signatures };
  }

  function parseVerifierKey(vkey) {
    // name+hex key id+base64 key; the base64 may itself hold "+".
    var m = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(vkey);
    if (!m) { fail("malformed verifier key"); }
    var parts = [m[1], m[2], m[3]];
    var raw = b64decode(parts[2]);
    if (raw.length !== 33 || raw[0] !== 1) { fail("the verifier key is not an Ed25519 key"); }
    var keyId = new Uint8Array(parts[1].match(/../g).map(function (h) { return parseInt(h, 16); }));
    return { name: parts[0], keyId: keyId, key: raw.slice(1) };
  }

  function verifyNote(note, vkey) {
    var key = parseVerifierKey(vkey);
    return sha256(concat([enc.encode(key.name + "\n"), new Uint8Array([1]), key.key])).then(function (h) {
      if (!equal(h.slice(0, 4), key.keyId)) { fail("the verifier key's id does not match its key"); }
      var sig = note.signatures.filter(function (s) {
        return s.name === key.name && equal(s.keyId, key.keyId);
      })[0];
      if (!sig) { fail("the checkpoint is not signed by " + key.name); }
      if (sig.signature.length !== 64) { fail("the signature is not 64 bytes"); }
      return crypto.subtle.importKey("raw", key.key, { name: "Ed25519" }, false, ["verify"])
        .then(function (k) { return crypto.subtle.verify({ name: "Ed25519" }, k, sig.signature, enc.encode(note.body)); })
        .then(function (ok) { if (!ok) { fail("the checkpoint signature is invalid"); } });
    });
  }

  function node(left, right) { return sha256(concat([new Uint8Array([1]), left, right])); }

  // SPEC: RFC 9162, section 2.1.3.2 (verifying an inclusion proof).
  function verifyInclusion(index, size, leaf, proof, root) {
    if (index >= size) { return Promise.reject(new Error("the index is beyond the checkpoint")); }
    var fn = index, sn = size - 1, r = Promise.resolve(leaf);
    proof.forEach(function (p) {
      r = r.then(function (hash) {
        if (sn === 0) { fail("the inclusion proof is too long"); }
        var out;
        if (fn % 2 === 1 || fn === sn) {
          out = node(p, hash);
          if (fn % 2 === 0) {
            while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
          }
        } else {
          out = node(hash, p);
        }
        fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
        return out;
      });
    });
    return r.then(function (hash) {
      if (sn !== 0) { fail("the inclusion proof is too short"); }
      if (!equal(hash, root)) { fail("the inclusion proof does not lead to the checkpoint's root"); }
    });
  }

  function pinnedKey(origin) {
    try { return localStorage.getItem(PIN_PREFIX + origin); } catch (e) { return null; }
  }

  // Verifies one receipt for (logId, recordId); resolves to a summary.
  function verifyReceipt(text, logId, recordId, servedKey) {
    var receipt = parseReceipt(text);
    var note = parseNote(receipt.note);
    var pinned = pinnedKey(note.origin);
    var vkey = pinned || servedKey;
    var entry = concat([enc.encode("WARG-LOG-LEAF-V0"), prefixed(logId), prefixed(recordId)]);
    if (!receipt.extra || !equal(receipt.extra, entry)) { fail("the receipt is for another record"); }
    return verifyNote(note, vkey)
      .then(function () { return sha256(concat([new Uint8Array([0]), entry])); })
      .then(function (leaf) { return verifyInclusion(receipt.index, note.size, leaf, receipt.proof, note.root); })
      .then(function () {
        return "Verified in this browser: record at log index " + receipt.index + " is included in the checkpoint of " +
          note.size + " records signed by " + (pinned ? "your pinned key" : "the key this registry serves (pin it on the Log page)") + ".";
      });
  }

  function verifyAll() {
    var served = document.body.getAttribute("data-verifier-key") || "";
    var token = window.cairnToken ? window.cairnToken() : null;
    var boxes = document.querySelectorAll(".verify[data-receipt]");
    var usable = window.crypto && window.crypto.subtle;
    Array.prototype.forEach.call(boxes, function (box) {
      if (box.getAttribute("data-started")) { return; }
      box.setAttribute("data-started", "true");
      var out = box.querySelector(".verify-result");
      if (!usable) {
        box.setAttribute("data-verdict", "unavailable");
        out.textContent = "Not verified: this browser offers WebCrypto only to pages served over HTTPS.";
        return;
      }
      out.textContent = "Verifying…";
      var headers = token ? { "Authorization": "Bearer " + token } : {};
      fetch(box.getAttribute("data-receipt"), { headers: headers, credentials: "omit", cache: "no-store" })
        .then(function (response) {
          if (!response.ok) { fail("the receipt could not be fetched (" + response.status + ")"); }
          return response.text();
        })
        .then(function (text) {
          return verifyReceipt(text, box.getAttribute("data-log-id"), box.getAttribute("data-record"), served);
        })
        .then(function (summary) {
          box.setAttribute("data-verdict", "passed");
          out.className = "verify-result passed";
          out.textContent = "Verification passed. " + summary;
        }, function (error) {
          box.setAttribute("data-verdict", "failed");
          out.className = "verify-result failed";
          out.textContent = "Verification FAILED: " + (error && error.message || error) + ".";
        });
    });
  }

  function pinButtons() {
    var button = document.getElementById("pin-key");
    if (!button || button.getAttribute("data-bound")) { return; }
    button.setAttribute("data-bound", "true");
    var origin = button.getAttribute("data-origin");
    var key = button.getAttribute("data-key");
    var status = document.getElementById("pin-status");
    function show() {
      var pinned = pinnedKey(origin);
      status.textContent = !pinned ? "No key is pinned in this browser." :
        pinned === key ? "This key is pinned in this browser." :
        "A DIFFERENT key is pinned in this browser: " + pinned;
    }
    button.addEventListener("click", function () {
      try { localStorage.setItem(PIN_PREFIX + origin, key); } catch (e) { /* storage disabled */ }
      show();
    });
    show();
  }

  function start() { verifyAll(); pinButtons(); }
  window.cairnVerify = { verifyReceipt: verifyReceipt };
  document.addEventListener("cairn:page", start);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
