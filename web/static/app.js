// Small behaviours for every page (CSP: no inline script; this module is the only glue).
const toast = (message) => {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = message;
  el.classList.add("show");
  clearTimeout(el._timer);
  el._timer = setTimeout(() => el.classList.remove("show"), 2200);
};

document.addEventListener("click", async (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    event.preventDefault();
    try {
      await navigator.clipboard.writeText(copy.dataset.copy);
      toast("Copied " + copy.dataset.copy);
    } catch {
      toast("Copy failed: select the link and copy it by hand");
    }
    return;
  }
  const confirmer = event.target.closest("[data-confirm]");
  if (confirmer && !window.confirm(confirmer.dataset.confirm)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
});

document.addEventListener("change", (event) => {
  const target = event.target;
  if (target.matches("[data-autosubmit]")) target.form.requestSubmit();
  if (target.id === "select-all") {
    for (const box of document.querySelectorAll('input[name="ids"]')) box.checked = target.checked;
  }
  if (target.id === "select-all" || target.name === "ids") {
    const n = document.querySelectorAll('input[name="ids"]:checked').length;
    const label = document.getElementById("bulk-count");
    if (label) label.textContent = n ? `${n} selected` : "Select links for bulk actions";
  }
});

// htmx sends the CSRF header from <body hx-headers>; a 4xx fragment shows where the form asked.
document.addEventListener("htmx:responseError", (event) => {
  if (!event.detail.xhr.responseText) toast("Something went wrong. Please try again.");
});
document.addEventListener("htmx:sendError", () => toast("Can't reach LinkRift. Check your connection."));

export { toast };

// Rules editor: show the fields of the chosen rule type only.
const showRuleKind = (select) => {
  const form = select.closest("[data-rule-form]");
  for (const box of form.querySelectorAll("[data-rule-kind]")) box.hidden = box.dataset.ruleKind !== select.value;
};
document.addEventListener("change", (event) => {
  if (event.target.matches("[data-rule-type]")) showRuleKind(event.target);
});

// UTM builder: preview the destination with the UTM values as a visitor will get it.
const updateUtm = () => {
  const out = document.getElementById("utm-preview");
  const base = document.querySelector("[data-utm-base]");
  if (!out || !base) return;
  try {
    const url = new URL(base.value);
    for (const input of document.querySelectorAll("[data-utm]")) {
      if (input.value.trim()) url.searchParams.set(input.name, input.value.trim());
    }
    out.textContent = url.toString();
  } catch {
    out.textContent = base.value ? "(enter a full URL starting with https://)" : "";
  }
};
document.addEventListener("input", (event) => {
  if (event.target.matches("[data-utm], [data-utm-base]")) updateUtm();
});
document.addEventListener("DOMContentLoaded", updateUtm);

// QR designer: the preview follows the form as it changes (debounced).
let qrTimer;
document.addEventListener("input", (event) => {
  const form = event.target.closest("[data-qr-form]");
  if (!form) return;
  clearTimeout(qrTimer);
  qrTimer = setTimeout(() => {
    const params = new URLSearchParams(new FormData(form));
    params.delete("csrf_token");
    params.delete("format");
    const img = document.getElementById("qr-preview");
    img.src = `${form.dataset.preview}?${params}`;
  }, 150);
});
document.addEventListener("error", (event) => {
  if (event.target.id === "qr-preview") {
    document.getElementById("qr-error").textContent = "That combination can't be drawn; check the numbers.";
  }
}, true);
document.addEventListener("load", (event) => {
  if (event.target.id === "qr-preview") document.getElementById("qr-error").textContent = "";
}, true);

// Bio editor: the preview frame follows the form (unsaved values, rendered by the server).
let bioTimer;
const refreshBio = (form) => {
  const params = new URLSearchParams(new FormData(form));
  params.delete("csrf_token");
  document.getElementById("bio-preview").src = `${form.dataset.preview}?${params}`;
};
for (const type of ["input", "change"]) {
  document.addEventListener(type, (event) => {
    const form = event.target.closest("[data-bio-form]");
    if (!form) return;
    clearTimeout(bioTimer);
    bioTimer = setTimeout(() => refreshBio(form), 250);
  });
}

// CSV import: the upload's progress while htmx sends the file.
document.addEventListener("htmx:xhr:progress", (event) => {
  const form = event.target.closest ? event.target.closest("[data-upload]") : null;
  const bar = document.getElementById("upload-progress");
  if (!form || !bar || !event.detail.lengthComputable) return;
  bar.hidden = false;
  bar.value = Math.round((100 * event.detail.loaded) / event.detail.total);
});
