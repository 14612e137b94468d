// Live updates of a running run's page over Server-Sent Events. Loaded as
// a file (the Content-Security-Policy forbids inline scripts).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var el = document.getElementById("run");
  if (!el || el.dataset.final === "true") {
    return;
  }
  var es = new EventSource(el.dataset.events);
  es.addEventListener("run", function (e) {
    var r = JSON.parse(e.data);
    var st = document.getElementById("run-state");
    st.textContent = r.state;
    st.className = "state " + r.state;
    r.stages.forEach(function (s) {
      var c = document.getElementById("stage-state-" + s.name);
      if (c) {
        c.textContent = s.state;
        c.className = "state " + s.state;
      }
    });
  });
  es.addEventListener("log", function (e) {
    var l = JSON.parse(e.data);
    var pre = document.getElementById("log-" + l.stage);
    if (pre) {
      pre.textContent = l.text;
    }
  });
  es.addEventListener("done", function () {
    es.close();
    window.location.reload();
  });
  // The credential that opened the stream ended (revoked, expired, signed
  // out): reloading leads to the sign-in form.
  es.addEventListener("end", function () {
    es.close();
    window.location.reload();
  });
});
