// The pipeline board: drag a card to another column, or use its "Move to" form (keyboard, and
// without this script the form posts and the page reloads). A move the server refuses puts the
// card back where it was and says why. "Show more" appends a column's next page. No library.
(function () {
  "use strict";
  var board, message;

  function csrfToken(form) {
    return form.querySelector("input[name=csrfmiddlewaretoken]").value;
  }

  function say(text, failed) {
    message.textContent = text;
    message.classList.toggle("board-error", Boolean(failed));
  }

  function columnOf(stage) {
    return board.querySelector('.board-column[data-stage="' + stage + '"]');
  }

  function redrawTotals(columns) {
    Object.keys(columns).forEach(function (stage) {
      var column = columnOf(stage);
      if (!column) { return; }
      var totals = columns[stage];
      column.querySelector(".board-count").textContent =
        totals.count.toLocaleString("en-US") + (totals.count === 1 ? " deal" : " deals");
      column.querySelector(".board-amounts").textContent = totals.amounts.length ? totals.amounts.map(function (pair) {
        return pair[0] + " " + Math.round(Number(pair[1])).toLocaleString("en-US");
      }).join(" · ") : "-";
    });
  }

  function move(card, stage) {
    var from = card.dataset.stage;
    if (String(stage) === from) { return; }
    var origin = card.parentNode, next = card.nextSibling;
    var target = columnOf(stage).querySelector(".board-cards");
    target.insertBefore(card, target.firstChild);
    card.classList.add("board-moving");
    var form = card.querySelector("form.board-move");
    var body = new URLSearchParams();
    body.set("deal", card.dataset.deal);
    body.set("from_stage", from);
    body.set("stage", stage);
    body.set("board", board.dataset.query);
    var query = board.dataset.query ? "?" + board.dataset.query : "";
    fetch(board.dataset.moveUrl + query, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Accept": "application/json", "X-CSRFToken": csrfToken(form)},
      body: body
    }).then(function (response) {
      return response.json().then(function (data) { return {ok: response.ok, data: data}; });
    }).then(function (answer) {
      card.classList.remove("board-moving");
      if (!answer.ok) { throw new Error(answer.data.error); }
      card.dataset.stage = String(stage);
      form.querySelector("input[name=from_stage]").value = String(stage);
      form.querySelector("select[name=stage]").value = String(stage);
      redrawTotals(answer.data.columns);
      say(answer.data.message, false);
      card.focus();
    }).catch(function (error) {
      card.classList.remove("board-moving");
      origin.insertBefore(card, next);
      form.querySelector("select[name=stage]").value = from;
      say("Not moved: " + (error.message || "the server could not be reached."), true);
      card.focus();
    });
  }

  function showMore(button) {
    var offset = Number(button.dataset.offset);
    var url = button.dataset.url + (button.dataset.url.indexOf("?") < 0 ? "?" : "&") + "offset=" + offset;
    button.disabled = true;
    fetch(url, {credentials: "same-origin"}).then(function (response) {
      if (!response.ok) { throw new Error("could not load more deals"); }
      return response.text();
    }).then(function (html) {
      var list = button.parentNode.querySelector(".board-cards");
      var before = list.children.length;
      list.insertAdjacentHTML("beforeend", html);
      var added = list.children.length - before;
      button.dataset.offset = String(offset + added);
      button.disabled = false;
      if (!added || offset + added >= Number(button.dataset.total)) { button.remove(); }
    }).catch(function (error) { button.disabled = false; say(error.message, true); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    board = document.querySelector(".board");
    message = document.getElementById("board-message");
    if (!board) { return; }
    var dragged = null;
    board.addEventListener("dragstart", function (event) {
      dragged = event.target.closest(".board-card");
      if (!dragged) { return; }
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", dragged.dataset.deal);
    });
    board.addEventListener("dragover", function (event) {
      var column = event.target.closest(".board-column");
      if (dragged && column) {
        event.preventDefault();
        board.querySelectorAll(".board-drop").forEach(function (c) { if (c !== column) { c.classList.remove("board-drop"); } });
        column.classList.add("board-drop");
      }
    });
    board.addEventListener("drop", function (event) {
      var column = event.target.closest(".board-column");
      board.querySelectorAll(".board-drop").forEach(function (c) { c.classList.remove("board-drop"); });
      if (dragged && column) {
        event.preventDefault();
        move(dragged, column.dataset.stage);
      }
      dragged = null;
    });
    board.addEventListener("dragend", function () {
      board.querySelectorAll(".board-drop").forEach(function (c) { c.classList.remove("board-drop"); });
      dragged = null;
    });
    board.addEventListener("submit", function (event) {
      var form = event.target.closest("form.board-move");
      if (!form) { return; }
      event.preventDefault();
      move(form.closest(".board-card"), form.querySelector("select[name=stage]").value);
    });
    board.addEventListener("click", function (event) {
      var button = event.target.closest(".board-more");
      if (button) { showMore(button); }
    });
  });
})();
