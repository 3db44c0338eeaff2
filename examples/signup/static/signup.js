"use strict";
// The sign-up page's few steps, over the otp-service JSON API mounted by the guard:
// captcha -> send code -> verify -> the token goes into the "create account" form.
(() => {
  const api = document.body.dataset.api;
  const purpose = document.body.dataset.purpose;
  const byId = (id) => document.getElementById(id);
  // The first challenge comes with the page (its picture is there at first paint).
  let captchaId = document.body.dataset.captchaId || null;

  function say(text, kind = "info") {
    const status = byId("status");
    status.textContent = text;
    status.dataset.kind = kind;
  }

  // What a person reads for the refusals they can meet here; the API's codes stay in the logs.
  const words = {
    invalid_phone: () => "That does not look like a mobile number. Check it and try again.",
    region_not_allowed: () => "We cannot send codes to numbers in that country.",
    captcha_required: () => "Type the characters in the picture first.",
    captcha_invalid: () => "The characters did not match the picture. Here is a new one.",
    code_invalid: (p) => `That code is not right. You can try ${p.attempts_left} more time(s).`,
    code_expired: () => "That code has expired. Ask for a new one.",
    too_many_attempts: () => "Too many wrong codes. Ask for a new one.",
    rate_limited: (p) =>
      `Too many attempts. Try again in ${Math.max(1, Math.ceil((p.retry_after || 60) / 60))} minute(s).`,
    number_opted_out: () => "This number asked us not to text it.",
  };

  function inWords(problem, status) {
    const explain = words[problem.code];
    if (explain) return explain(problem);
    return status >= 500
      ? "Something went wrong on our side. Please try again in a moment."
      : problem.detail || "That did not work. Please try again.";
  }

  async function call(path, body) {
    const response = await fetch(api + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(inWords(data, response.status));
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
      // The message sits by the code field and focus moves there: where the person looks next.
      say("");
      byId("code-sent").textContent =
        `We sent a code to ${sent.phone}. It is valid for ${Math.round(sent.expires_in / 60)} minutes.`;
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

  if (!captchaId) {
    newCaptcha().catch((error) => say(error.message, "error"));
  }
})();
