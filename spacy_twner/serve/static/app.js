// The demo page: the API's own answers, displaCy's rendering from the server.
async function post(path, body) {
  const response = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) {
    const error = data.error || {};
    throw new Error(`${error.field || "request"}: ${error.message || response.statusText}`);
  }
  return data;
}

function show(id, message) {
  const element = document.getElementById(id);
  element.textContent = message || "";
  element.hidden = !message;
}

function entityTable(entities) {
  const table = document.createElement("table");
  table.className = "ents";
  table.innerHTML = "<tr><th>entity</th><th>label</th><th>characters</th><th>confidence</th></tr>";
  for (const ent of entities) {
    const row = table.insertRow();
    for (const value of [ent.text, ent.label, `${ent.start}–${ent.end}`, ent.confidence == null ? "–" : ent.confidence.toFixed(3)]) {
      row.insertCell().textContent = value;
    }
  }
  return table;
}

document.getElementById("find").addEventListener("click", async () => {
  const texts = document.getElementById("tweets").value.split("\n").filter((t) => t.trim());
  const results = document.getElementById("results");
  results.replaceChildren();
  show("ents-error");
  if (!texts.length) return show("ents-error", "Type a tweet first.");
  try {
    const data = await post("/v1/ents", {texts, render: true});
    data.results.forEach((result) => {
      const tweet = document.createElement("div");
      tweet.className = "tweet";
      tweet.innerHTML = result.html; // displaCy's markup: the text is escaped by the server
      if (result.entities.length) tweet.appendChild(entityTable(result.entities));
      results.appendChild(tweet);
    });
  } catch (error) {
    show("ents-error", error.message);
  }
});

document.getElementById("compare").addEventListener("click", async () => {
  show("sim-error");
  document.getElementById("similarity").textContent = "";
  try {
    const data = await post("/v1/similarity", {a: document.getElementById("text-a").value, b: document.getElementById("text-b").value});
    document.getElementById("similarity").textContent = `cosine similarity: ${data.cosine.toFixed(3)}`;
  } catch (error) {
    show("sim-error", error.message);
  }
});

fetch("/healthz").then((r) => r.json()).then((h) => {
  document.getElementById("model").textContent = `${h.model} ${h.version}: ${h.pipeline.join(" → ")}`;
});
