/* A stand-in of WeCom's JS-SDK (jweixin + jwxwork), served only by the fake WeCom server for tests and demos.
   It plays the SDK's part against the fake: wx.agentConfig has its signature checked by the server, and
   wx.invoke answers for the chat open in the fake WeCom client (POST /_control/client). */
(function () {
  "use strict";
  var base = new URL(document.currentScript.src).origin;
  var allowed = null; // the jsApiList of a verified agentConfig

  function call(path, body) {
    var init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "text/plain" }, body: JSON.stringify(body) };
    return fetch(base + path, init).then(function (r) { return r.json(); });
  }

  function answer(cb, result) { if (typeof cb === "function") { cb(result); } }

  window.wx = {
    config: function () {},
    ready: function (fn) { fn(); },
    error: function () {},
    agentConfig: function (o) {
      call("/_jssdk/agent_config", {
        corpid: o.corpid, agentid: o.agentid, timestamp: o.timestamp, nonceStr: o.nonceStr,
        signature: o.signature, url: location.href.split("#")[0]
      }).then(function (res) {
        if (res.errMsg === "agentConfig:ok") {
          allowed = o.jsApiList || [];
          answer(o.success, res);
        } else {
          answer(o.fail, res);
        }
      }, function (err) { answer(o.fail, { errMsg: "agentConfig:fail " + err }); });
    },
    invoke: function (name, args, cb) {
      if (allowed === null || allowed.indexOf(name) < 0) {
        answer(cb, { err_msg: name + ":fail_no permission" });
        return;
      }
      if (name === "sendChatMessage") {
        call("/_jssdk/send", args || {}).then(function (res) { answer(cb, res); });
        return;
      }
      call("/_jssdk/context").then(function (ctx) {
        if (name === "getContext") {
          answer(cb, { err_msg: "getContext:ok", entry: ctx.entry });
        } else if (name === "getCurExternalContact" && ctx.entry === "single_chat_tools") {
          answer(cb, { err_msg: "getCurExternalContact:ok", userId: ctx.external_userid });
        } else if (name === "getCurExternalChat" && ctx.entry === "group_chat_tools") {
          answer(cb, { err_msg: "getCurExternalChat:ok", chatId: ctx.chat_id });
        } else {
          answer(cb, { err_msg: name + ":fail" });
        }
      });
    }
  };
})();
