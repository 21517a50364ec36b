/* The visual rule builder of segments (and any form with a rule in the JSON rule language).

   The builder edits the rule's JSON document in place: what it shows is drawn from the document,
   and each change is written back into the same objects. So the JSON view (the form's textarea,
   under "Advanced") and the builder always agree, and a rule round-trips exactly: nothing the
   builder did not change is touched, and a condition it cannot draw is shown as its JSON.

   What it offers comes from the server (profiles.segments.builder.rule_vocabulary): per leaf a
   shape ("field", "choice", "event", "page"), its fields or choices, their types and examples.
   Every change asks the server for the live count (the same validation and query as a refresh).
   No external libraries: the admin works offline. */
(function () {
  "use strict";

  var GROUP_LABELS = {all: "All of these", any: "Any of these"};
  var COUNT_OPERATORS = {gte: "at least", lte: "at most", eq: "exactly", gt: "more than", lt: "fewer than"};
  var PAGE_OPERATORS = {contains: "contains", eq: "is", starts_with: "starts with"};
  var uid = 0;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") { node.textContent = attrs[name]; }
      else if (name === "class") { node.className = attrs[name]; }
      else if (name.slice(0, 2) === "on") { node.addEventListener(name.slice(2), attrs[name]); }
      else if (attrs[name] !== null && attrs[name] !== undefined) { node.setAttribute(name, attrs[name]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  function select(label, options, value, onchange) {
    // options: [[value, text], ...]; a current value not among them is kept and shown as is.
    var known = options.some(function (o) { return String(o[0]) === String(value); });
    if (!known && value !== undefined && value !== null && value !== "") { options = [[value, String(value)]].concat(options); }
    var node = el("select", {"aria-label": label, onchange: function () { onchange(node.value); }},
      options.map(function (o) { return el("option", {value: o[0], text: o[1]}); }));
    node.value = value === undefined || value === null ? (options[0] || [""])[0] : value;
    return node;
  }

  function input(label, value, type, onchange, list) {
    var node = el("input", {type: type || "text", "aria-label": label, list: list || null,
      oninput: function () { onchange(node.value); }});
    node.value = value === undefined || value === null ? "" : value;
    return node;
  }

  function datalist(values) {
    uid += 1;
    var id = "rule-builder-list-" + uid;
    return {id: id, node: el("datalist", {id: id}, values.map(function (v) { return el("option", {value: v}); }))};
  }

  function replaceContent(node, content) {
    // In place: the parent keeps pointing at the same object.
    Object.keys(node).forEach(function (key) { delete node[key]; });
    Object.keys(content).forEach(function (key) { node[key] = content[key]; });
  }

  function isNumeric(types) {
    return types && types.length > 0 && types.every(function (t) { return t === "integer" || t === "number"; });
  }

  // A value typed in a box, as the field's JSON type: numbers for numeric fields, true/false
  // for yes/no fields, text otherwise.
  function typed(text, types) {
    if (isNumeric(types) && text.trim() !== "" && !isNaN(Number(text))) { return Number(text); }
    if (types && types.length === 1 && types[0] === "boolean") { return text === "true"; }
    return text;
  }

  function shown(value) {
    if (Array.isArray(value)) { return value.map(shown).join(", "); }
    return value === undefined || value === null ? "" : String(value);
  }

  function Builder(options) {
    this.textarea = options.textarea;
    this.vocabulary = options.vocabulary;
    this.onChange = options.onChange;
    this.root = el("div", {class: "cdp-rule-builder", role: "group", "aria-label": "Rule builder"});
    this.rule = null;
  }

  // The rule from the JSON view: an empty one starts as an empty "all" group (written back only
  // once the builder changes it); anything but a JSON object is left to be fixed there.
  Builder.prototype.load = function () {
    var text = this.textarea.value.trim();
    var parsed;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch (error) {
      parsed = null;
    }
    var isObject = parsed !== null && typeof parsed === "object" && !Array.isArray(parsed);
    this.rule = !isObject ? null : (Object.keys(parsed).length ? parsed : {all: []});
    this.draw();
  };

  Builder.prototype.changed = function () {
    this.textarea.value = JSON.stringify(this.rule, null, 2);
    if (this.onChange) { this.onChange(this.rule); }
  };

  Builder.prototype.redraw = function () {
    this.changed();
    this.draw();
  };

  Builder.prototype.draw = function () {
    this.root.replaceChildren();
    if (this.rule === null) {
      this.root.appendChild(el("p", {class: "errornote", text: "The JSON below is not valid: fix it there, and the builder shows it again."}));
      return;
    }
    if (this.groupKind(this.rule) === null) {
      // A single condition at the top: shown inside an "all" group, written back as it was.
      this.root.appendChild(this.drawTopLeaf());
      return;
    }
    this.root.appendChild(this.drawNode(this.rule, null));
  };

  Builder.prototype.drawTopLeaf = function () {
    var self = this;
    var box = el("div", {class: "cdp-rule-group"});
    box.appendChild(this.drawLeaf(this.rule));
    box.appendChild(el("button", {type: "button", class: "button", text: "+ Condition", onclick: function () {
      self.rule = {all: [self.rule, self.defaultLeaf()]};
      self.redraw();
    }}));
    return box;
  };

  Builder.prototype.groupKind = function (node) {
    if (!node || typeof node !== "object") { return null; }
    var keys = Object.keys(node);
    if (keys.length !== 1) { return null; }
    if ((keys[0] === "all" || keys[0] === "any") && Array.isArray(node[keys[0]])) { return keys[0]; }
    if (keys[0] === "not" && node.not && typeof node.not === "object") { return "not"; }
    return null;
  };

  Builder.prototype.leafKind = function (node) {
    var leaves = this.vocabulary.leaves;
    var kinds = Object.keys(node || {}).filter(function (key) { return leaves[key]; });
    return kinds.length === 1 ? kinds[0] : null;
  };

  Builder.prototype.defaultLeaf = function () {
    var leaves = this.vocabulary.leaves;
    if (leaves.event) { return {event: ""}; }
    return this.leafFor(Object.keys(leaves)[0]);
  };

  Builder.prototype.leafFor = function (kind) {
    var description = this.vocabulary.leaves[kind];
    if (description.shape === "choice") {
      var first = (description.choices[0] || [""])[0];
      var node = {};
      node[kind] = first;
      return node;
    }
    if (description.shape === "event") { return {event: ""}; }
    if (description.shape === "page") { return {page: "", op: "contains"}; }
    var leaf = {};
    leaf[kind] = (description.fields[0] || {key: ""}).key;
    leaf.op = "eq";
    leaf.value = "";
    return leaf;
  };

  Builder.prototype.drawNode = function (node, remove) {
    var group = this.groupKind(node);
    if (group === "not") { return this.drawNot(node, remove); }
    if (group) { return this.drawGroup(node, group, remove); }
    var leaf = this.drawLeaf(node);
    if (remove) {
      // On the condition's first line, before its property filters.
      leaf.insertBefore(this.removeButton(remove), leaf.querySelector(":scope > .cdp-rule-where"));
    }
    return leaf;
  };

  Builder.prototype.removeButton = function (remove) {
    return el("button", {type: "button", class: "cdp-rule-remove", "aria-label": "Remove this condition", title: "Remove", text: "×", onclick: remove});
  };

  Builder.prototype.drawGroup = function (node, kind, remove) {
    var self = this;
    var children = node[kind];
    var box = el("fieldset", {class: "cdp-rule-group"});
    var legend = el("legend", {}, [select("Match", [["all", GROUP_LABELS.all], ["any", GROUP_LABELS.any]], kind, function (value) {
      node[value] = node[kind];
      delete node[kind];
      self.redraw();
    })]);
    box.appendChild(legend);
    var list = el("ol", {class: "cdp-rule-list"});
    children.forEach(function (child, index) {
      list.appendChild(el("li", {}, [self.drawNode(child, function () {
        children.splice(index, 1);
        self.redraw();
      })]));
    });
    if (children.length === 0) { list.appendChild(el("li", {class: "cdp-empty", text: "No conditions yet: everyone matches an empty “all”, nobody an empty “any”."})); }
    box.appendChild(list);
    var actions = el("p", {class: "cdp-rule-actions"}, [
      el("button", {type: "button", class: "button", text: "+ Condition", onclick: function () { children.push(self.defaultLeaf()); self.redraw(); }}),
      el("button", {type: "button", class: "button", text: "+ Group", onclick: function () { children.push({any: [self.defaultLeaf()]}); self.redraw(); }}),
      el("button", {type: "button", class: "button", text: "Exclude…", title: "Add a group of conditions people must not match", onclick: function () { children.push({not: {any: [self.defaultLeaf()]}}); self.redraw(); }})
    ]);
    if (remove) { actions.appendChild(this.removeButton(remove)); }
    box.appendChild(actions);
    return box;
  };

  Builder.prototype.drawNot = function (node, remove) {
    var self = this;
    var box = el("fieldset", {class: "cdp-rule-group cdp-rule-not"});
    box.appendChild(el("legend", {text: "None of these (excluded)"}));
    box.appendChild(this.drawNode(node.not, null));
    var actions = el("p", {class: "cdp-rule-actions"}, [
      el("button", {type: "button", class: "button", text: "Include instead", onclick: function () { replaceContent(node, node.not); self.redraw(); }})
    ]);
    if (remove) { actions.appendChild(this.removeButton(remove)); }
    box.appendChild(actions);
    return box;
  };

  Builder.prototype.drawLeaf = function (node) {
    var self = this;
    var kind = this.leafKind(node);
    var row = el("div", {class: "cdp-rule-leaf"});
    var kinds = Object.keys(this.vocabulary.leaves).map(function (key) { return [key, self.vocabulary.leaves[key].label]; });
    if (kind === null) {
      row.appendChild(this.drawJson(node));
      return row;
    }
    row.appendChild(select("Kind of condition", kinds, kind, function (value) {
      replaceContent(node, self.leafFor(value));
      self.redraw();
    }));
    var description = this.vocabulary.leaves[kind];
    var draw = {field: this.drawField, choice: this.drawChoice, event: this.drawEvent, page: this.drawPage}[description.shape];
    if (draw) { draw.call(this, row, node, kind, description); }
    else { row.appendChild(this.drawJson(node)); }
    return row;
  };

  // A condition the builder cannot draw: its JSON, editable.
  Builder.prototype.drawJson = function (node) {
    var self = this;
    var box = el("textarea", {class: "cdp-rule-json", rows: 2, cols: 60, "aria-label": "Condition as JSON"});
    box.value = JSON.stringify(node);
    box.addEventListener("change", function () {
      try {
        var parsed = JSON.parse(box.value);
        if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
          replaceContent(node, parsed);
          self.redraw();
        }
      } catch (error) {
        box.setCustomValidity("Not valid JSON: " + error.message);
        box.reportValidity();
      }
    });
    return box;
  };

  Builder.prototype.drawField = function (row, node, kind, description) {
    var self = this;
    var fields = description.fields || [];
    var field = fields.filter(function (f) { return f.key === node[kind]; })[0] || {types: [], examples: []};
    if (description.free) {
      var keys = datalist(fields.map(function (f) { return f.key; }));
      row.appendChild(keys.node);
      row.appendChild(input("Field", node[kind], "text", function (value) { node[kind] = value; self.changed(); }, keys.id));
      row.lastChild.addEventListener("change", function () { self.draw(); });
    } else {
      row.appendChild(select("Field", fields.map(function (f) { return [f.key, f.label]; }), node[kind], function (value) {
        node[kind] = value;
        self.redraw();
      }));
    }
    this.drawComparison(row, node, field);
  };

  // op and value of a comparison; the value's box fits the operator and the field's type.
  Builder.prototype.drawComparison = function (row, node, field) {
    var self = this;
    var op = node.op || ("value" in node ? "eq" : "exists");
    var operators = Object.keys(this.vocabulary.operators).map(function (key) { return [key, self.vocabulary.operators[key]]; });
    row.appendChild(select("Operator", operators, op, function (value) {
      node.op = value;
      if (value === "exists") { node.value = true; }
      else if (value === "in" || value === "not_in") { node.value = Array.isArray(node.value) ? node.value : (node.value === "" || node.value === undefined ? [] : [node.value]); }
      else if (Array.isArray(node.value)) { node.value = node.value.length ? node.value[0] : ""; }
      else if (typeof node.value === "boolean" && !(field.types.length === 1 && field.types[0] === "boolean")) { node.value = ""; }
      self.redraw();
    }));
    row.appendChild(this.valueBox(node, op, field));
  };

  Builder.prototype.valueBox = function (node, op, field) {
    var self = this;
    var types = field.types || [];
    if (op === "exists") {
      return select("Present", [["true", "yes"], ["false", "no"]], node.value === false ? "false" : "true", function (value) {
        node.value = value === "true";
        self.changed();
      });
    }
    if (types.length === 1 && types[0] === "boolean" && op !== "in" && op !== "not_in") {
      return select("Value", [["true", "yes"], ["false", "no"]], String(node.value), function (value) {
        node.value = value === "true";
        self.changed();
      });
    }
    var examples = datalist((field.examples || []).map(String));
    var type = field.format === "date" ? "date" : (isNumeric(types) && op !== "in" && op !== "not_in" ? "number" : "text");
    var box = input(op === "in" || op === "not_in" ? "Values, separated by commas" : "Value", shown(node.value), type, function (text) {
      if (op === "in" || op === "not_in") {
        node.value = text.split(",").map(function (part) { return typed(part.trim(), types); }).filter(function (v) { return v !== ""; });
      } else {
        node.value = typed(text, types);
      }
      self.changed();
    }, examples.id);
    if (op === "in" || op === "not_in") { box.placeholder = "a, b, c"; }
    return el("span", {class: "cdp-rule-value"}, [examples.node, box]);
  };

  Builder.prototype.drawChoice = function (row, node, kind, description) {
    var self = this;
    row.appendChild(select(description.label, description.choices, node[kind], function (value) {
      var choice = description.choices.filter(function (c) { return String(c[0]) === value; })[0];
      node[kind] = choice ? choice[0] : value;
      self.changed();
    }));
    // Optional narrowing keys ("from provider ..."): absent means any.
    Object.keys(description.qualifiers || {}).forEach(function (key) {
      var options = [["", "any " + key]].concat(description.qualifiers[key]);
      row.appendChild(select(key, options, node[key] || "", function (value) {
        if (value) { node[key] = value; } else { delete node[key]; }
        self.changed();
      }));
    });
    if (description.window) { this.drawDays(row, node); }
  };

  // "ever" or "in the last N days" (within_days).
  Builder.prototype.drawDays = function (row, node) {
    var self = this;
    var part = el("span", {class: "cdp-rule-part"}, [select("When", [["ever", "ever"], ["within", "in the last"]], "within_days" in node ? "within" : "ever", function (value) {
      if (value === "within") { node.within_days = 30; } else { delete node.within_days; }
      self.redraw();
    })]);
    if ("within_days" in node) {
      var days = input("Days", node.within_days, "number", function (value) {
        var n = parseInt(value, 10);
        if (!isNaN(n)) { node.within_days = n; self.changed(); }
      });
      days.min = "1";
      part.appendChild(days);
      part.appendChild(el("span", {text: "days"}));
    }
    row.appendChild(part);
  };

  Builder.prototype.drawEvent = function (row, node, kind, description) {
    var self = this;
    var events = description.events || [];
    var names = datalist(events.map(function (e) { return e.name; }));
    row.appendChild(names.node);
    var name = input("Event name", node.event, "text", function (value) { node.event = value; self.changed(); }, names.id);
    name.placeholder = "Order Completed";
    name.addEventListener("change", function () { self.draw(); });
    row.appendChild(name);
    var event = events.filter(function (e) { return e.name === node.event; })[0] || {properties: []};
    this.drawOccurrence(row, node);
    this.drawWhere(row, node, event.properties);
  };

  Builder.prototype.drawPage = function (row, node) {
    var self = this;
    row.appendChild(el("span", {text: "URL"}));
    row.appendChild(select("URL operator", Object.keys(PAGE_OPERATORS).map(function (k) { return [k, PAGE_OPERATORS[k]]; }), node.op || "contains", function (value) {
      node.op = value;
      self.changed();
    }));
    var url = input("URL", node.page, "text", function (value) { node.page = value; self.changed(); });
    url.placeholder = "/pricing";
    row.appendChild(url);
    this.drawOccurrence(row, node);
    this.drawWhere(row, node, []);
  };

  // How often (count) and when (within the last days, or between two dates).
  Builder.prototype.drawOccurrence = function (row, node) {
    var self = this;
    if (node.occurrence) { return; }  // first/last occurrence: edited in the JSON view
    var count = node.count || {op: "gte", value: 1};
    var often = el("span", {class: "cdp-rule-part"}, [
      select("How often", Object.keys(COUNT_OPERATORS).map(function (k) { return [k, COUNT_OPERATORS[k]]; }), count.op || "gte", function (value) {
        node.count = {op: value, value: (node.count || count).value};
        self.changed();
      }),
      input("Times", count.value, "number", function (value) {
        var times = parseInt(value, 10);
        if (!isNaN(times)) { node.count = {op: (node.count || count).op || "gte", value: times}; self.changed(); }
      }),
      el("span", {text: "times"})
    ]);
    often.querySelector("input").min = "0";
    row.appendChild(often);
    var when = "within_days" in node ? "within" : ("between" in node ? "between" : "ever");
    var window = el("span", {class: "cdp-rule-part"}, [select("When", [["ever", "ever"], ["within", "in the last"], ["between", "between"]], when, function (value) {
      delete node.within_days;
      delete node.between;
      if (value === "within") { node.within_days = 30; }
      if (value === "between") {
        var today = new Date().toISOString().slice(0, 10);
        node.between = [today.slice(0, 8) + "01", today];
      }
      self.redraw();
    })]);
    if (when === "within") {
      var days = input("Days", node.within_days, "number", function (value) {
        var n = parseInt(value, 10);
        if (!isNaN(n)) { node.within_days = n; self.changed(); }
      });
      days.min = "1";
      window.appendChild(days);
      window.appendChild(el("span", {text: "days"}));
    }
    if (when === "between" && Array.isArray(node.between)) {
      [0, 1].forEach(function (index) {
        window.appendChild(input(index ? "To" : "From", String(node.between[index] || "").slice(0, 10), "date", function (value) {
          node.between[index] = value;
          self.changed();
        }));
      });
    }
    row.appendChild(window);
  };

  // Property filters of an event: "where total is more than 100".
  Builder.prototype.drawWhere = function (row, node, properties) {
    var self = this;
    var where = node.where || [];
    var list = el("ul", {class: "cdp-rule-where"});
    var keys = datalist(properties.map(function (p) { return p.key; }));
    list.appendChild(keys.node);
    where.forEach(function (item, index) {
      var field = properties.filter(function (p) { return p.key === item.property; })[0] || {types: [], examples: []};
      var line = el("li", {}, [el("span", {text: "where"})]);
      if (!item || typeof item !== "object" || Array.isArray(item)) {
        line.appendChild(self.drawJson(item));
      } else {
        var key = input("Property", item.property, "text", function (value) { item.property = value; self.changed(); }, keys.id);
        key.addEventListener("change", function () { self.draw(); });
        line.appendChild(key);
        self.drawComparison(line, item, field);
      }
      line.appendChild(self.removeButton(function () {
        where.splice(index, 1);
        if (where.length === 0) { delete node.where; }
        self.redraw();
      }));
      list.appendChild(line);
    });
    list.appendChild(el("li", {}, [el("button", {type: "button", class: "button cdp-rule-small", text: "+ Property filter", onclick: function () {
      node.where = where;
      where.push({property: (properties[0] || {key: ""}).key, op: "eq", value: ""});
      self.redraw();
    }})]));
    row.appendChild(list);
  };

  // --- Mounting on a form, with the live count ---------------------------------------------

  function mount(options) {
    var textarea = document.getElementById(options.textarea);
    var vocabulary = JSON.parse(document.getElementById(options.vocabulary).textContent);
    if (!textarea) { return null; }
    var row = textarea.closest(".form-row") || textarea.parentNode;
    var details = el("details", {class: "cdp-rule-advanced"}, [el("summary", {text: "Advanced: the rule as JSON"})]);
    row.parentNode.insertBefore(details, row);
    var host = el("div", {class: "form-row cdp-rule-host"}, [el("label", {text: "Rule:"})]);
    details.parentNode.insertBefore(host, details);
    details.appendChild(row);
    if (textarea.closest(".errors")) { details.open = true; }

    var live = options.live;
    var timer = null;
    var builder = new Builder({textarea: textarea, vocabulary: vocabulary, onChange: function (rule) {
      if (!live) { return; }
      clearTimeout(timer);
      timer = setTimeout(function () { live(rule); }, 400);
    }});
    host.appendChild(builder.root);
    builder.load();
    textarea.addEventListener("input", function () {
      builder.load();
      if (live && builder.rule !== null) { clearTimeout(timer); timer = setTimeout(function () { live(builder.rule); }, 400); }
    });
    return builder;
  }

  // The live count of a form: POSTs a payload to the preview URL and shows the count, the
  // errors or the warnings; an older answer never replaces a newer one.
  function LiveCount(options) {
    this.url = options.url;
    this.describe = options.describe;  // body -> the sentence under the builder
    this.status = el("p", {class: "cdp-rule-count", role: "status", "aria-live": "polite"});
    this.errors = el("ul", {class: "errorlist"});
    this.warnings = el("ul", {class: "cdp-warnings"});
    this.asked = 0;
  }

  LiveCount.prototype.place = function (after) {
    after.parentNode.insertBefore(this.warnings, after.nextSibling);
    after.parentNode.insertBefore(this.errors, after.nextSibling);
    after.parentNode.insertBefore(this.status, after.nextSibling);
  };

  LiveCount.prototype.ask = function (payload, onAnswer) {
    var self = this;
    this.asked += 1;
    var mine = this.asked;
    this.status.textContent = "Counting…";
    var token = document.querySelector("input[name=csrfmiddlewaretoken]");
    fetch(this.url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": token ? token.value : ""},
      body: JSON.stringify(payload)
    }).then(function (response) {
      return response.json();
    }).then(function (body) {
      if (mine === self.asked) { self.show(body); if (onAnswer) { onAnswer(body); } }
    }).catch(function (error) {
      self.show({errors: ["The count failed: " + error]});
    });
  };

  LiveCount.prototype.show = function (body) {
    var self = this;
    this.errors.replaceChildren();
    this.warnings.replaceChildren();
    (body.errors || []).forEach(function (message) { self.errors.appendChild(el("li", {text: message})); });
    if (body.errors) { this.status.textContent = "Not complete, or not valid:"; return; }
    (body.warnings || []).forEach(function (message) { self.warnings.appendChild(el("li", {text: message})); });
    this.status.textContent = this.describe(body);
  };

  // The form rows of a model form, by field name (Django's "field-<name>" class).
  function formRow(name) {
    return document.querySelector(".form-row.field-" + name) || (document.getElementById("id_" + name) || {}).parentNode;
  }

  window.RuleBuilder = {mount: mount, Builder: Builder, LiveCount: LiveCount, formRow: formRow};
})();
