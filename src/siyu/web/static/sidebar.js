/* The chat sidebar: sign wx.agentConfig (the server signed it), ask the JS-SDK which chat is open, load that
   customer's or group's card, and put a suggested reply into the chat with sendChatMessage. */
(function () {
  "use strict";
  var root = document.getElementById("sidebar");
  var status = document.getElementById("sidebar-status");
  var org = encodeURIComponent(root.dataset.org);
  var config = JSON.parse(root.dataset.agentConfig);

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "alert" : "muted";
    status.setAttribute("role", isError ? "alert" : "status");
  }

  function load(path) {
    htmx.ajax("GET", path, { target: "#card", swap: "innerHTML" }).then(function () { status.textContent = ""; });
  }

  function showChat() {
    wx.invoke("getContext", {}, function (ctx) {
      if (ctx.err_msg !== "getContext:ok") { say(root.dataset.noChat, true); return; }
      if (ctx.entry === "single_chat_tools") {
        wx.invoke("getCurExternalContact", {}, function (res) {
          if (res.err_msg === "getCurExternalContact:ok") { load("/sidebar/" + org + "/contact/" + encodeURIComponent(res.userId)); }
          else { say(root.dataset.noChat, true); }
        });
      } else if (ctx.entry === "group_chat_tools") {
        wx.invoke("getCurExternalChat", {}, function (res) {
          if (res.err_msg === "getCurExternalChat:ok") { load("/sidebar/" + org + "/group/" + encodeURIComponent(res.chatId)); }
          else { say(root.dataset.noChat, true); }
        });
      } else {
        say(root.dataset.noChat, true);
      }
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action=send-script]");
    if (!button) { return; }
    wx.invoke("sendChatMessage", { msgtype: "text", text: { content: button.dataset.text } }, function (res) {
      say(res.err_msg === "sendChatMessage:ok" ? root.dataset.sent : root.dataset.sendFailed, res.err_msg !== "sendChatMessage:ok");
    });
  });

  wx.agentConfig({
    corpid: config.corpid,
    agentid: config.agentid,
    timestamp: config.timestamp,
    nonceStr: config.nonceStr,
    signature: config.signature,
    jsApiList: config.jsApiList,
    success: showChat,
    fail: function () { say(root.dataset.sdkFailed, true); }
  });
})();
