"use strict";
// The sign-up page's few steps, over the otp-service JSON API mounted by the guard:
// captcha -> send code -> verify -> the token goes into the "create account" form.
(() => {
  const api = document.body.dataset.api;
  const purpose = document.body.dataset.purpose;
  const byId = (id) => document.getElementById(id);
  let captchaId = null;

  function say(text, kind = "info") {
    const status = byId("status");
    status.textContent = text;
    status.dataset.kind = kind;
  }

  async function call(path, body) {
    const response = await fetch(api + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(data.detail || `The server answered ${response.status}.`);
    }
    return data;
  }

  async function newCaptcha() {
    const challenge = await call("/captcha", { purpose });
    captchaId = challenge.captcha_id;
    byId("captcha-image").src = challenge.image;
    byId("captcha-audio").href = `${api}/captcha/${encodeURIComponent(captchaId)}.wav`;
    byId("captcha-answer").value = "";
  }

  byId("captcha-refresh").addEventListener("click", () => {
    newCaptcha().catch((error) => say(error.message, "error"));
  });

  byId("send-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const sent = await call("/send-code", {
        phone: byId("phone").value,
        purpose,
        captcha_id: captchaId,
        captcha_answer: byId("captcha-answer").value,
      });
      say(`We sent a code to ${sent.phone}. It is valid for ${Math.round(sent.expires_in / 60)} minutes.`);
      byId("verify-form").hidden = false;
      byId("code").focus();
    } catch (error) {
      say(error.message, "error");
    }
    // A challenge works once, right or wrong: the next attempt needs a new picture.
    newCaptcha().catch((error) => say(error.message, "error"));
  });

  byId("verify-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const approved = await call("/verify", {
        phone: byId("phone").value,
        code: byId("code").value.trim(),
        purpose,
      });
      byId("otp-token").value = approved.token;
      byId("send-form").hidden = true;
      byId("verify-form").hidden = true;
      byId("account-form").hidden = false;
      say("Your number is verified. One last step.");
      byId("name").focus();
    } catch (error) {
      say(error.message, "error");
    }
  });

  newCaptcha().catch((error) => say(error.message, "error"));
})();
