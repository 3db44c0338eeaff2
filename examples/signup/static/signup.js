"use strict";
// The sign-up page's few steps, over the otp-service JSON API mounted by the guard:
// captcha -> send code -> verify -> the token goes into the "create account" form.
(() => {
  const api = document.body.dataset.api;
  const purpose = document.body.dataset.purpose;
  const byId = (id) => document.getElementById(id);
  const wantsImage = document.body.dataset.image === "yes";
  const wantsPow = document.body.dataset.pow === "yes";
  const audioPow = document.body.dataset.audioPow === "yes";
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

  class Refusal extends Error {
    constructor(problem, status) {
      super(inWords(problem, status));
      this.problem = problem;
    }
  }

  async function call(path, body) {
    const response = await fetch(api + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Refusal(data, response.status);
    }
    return data;
  }

  // Proof of work: an ALTCHA v2 challenge (PBKDF2/SHA-256) solved with WebCrypto, which runs
  // the same native PBKDF2 an attacker's code would. The answer is what the widget would send.
  const fromHex = (hex) => Uint8Array.from(hex.match(/../g), (pair) => parseInt(pair, 16));
  const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const MAX_ATTEMPTS = 1_000_000;

  async function solvePow(challenge) {
    const p = challenge.parameters;
    const nonce = fromHex(p.nonce);
    const salt = fromHex(p.salt);
    const prefix = p.keyPrefix.toLowerCase();
    const password = new Uint8Array(nonce.length + 4);
    password.set(nonce);
    const counterView = new DataView(password.buffer, nonce.length);
    for (let counter = 0; counter < MAX_ATTEMPTS; counter++) {
      counterView.setUint32(0, counter); // big-endian, as the protocol's "uint32" counter
      const key = await crypto.subtle.importKey("raw", password, "PBKDF2", false, ["deriveBits"]);
      const bits = await crypto.subtle.deriveBits(
        { name: "PBKDF2", hash: "SHA-256", salt, iterations: p.cost },
        key,
        p.keyLength * 8,
      );
      const derivedKey = toHex(new Uint8Array(bits));
      if (derivedKey.startsWith(prefix)) {
        return btoa(JSON.stringify({ challenge, solution: { counter, derivedKey } }));
      }
    }
    throw new Error("Your browser could not finish the check. Please reload the page.");
  }

  async function proofOfWork(phone) {
    // With the number, the challenge is as hard as this request will need.
    return solvePow(await call("/pow", phone ? { phone } : {}));
  }

  async function newCaptcha() {
    const challenge = await call("/captcha", { purpose });
    captchaId = challenge.captcha_id;
    byId("captcha-image").src = challenge.image;
    byId("captcha-audio").href = `${api}/captcha/${encodeURIComponent(captchaId)}.wav`;
    const player = byId("captcha-player");
    player.hidden = true;
    player.removeAttribute("src");
    byId("captcha-answer").value = "";
  }

  byId("captcha-audio").addEventListener("click", async (event) => {
    // The audio is spoken only after a proof of work (OTP_CAPTCHA_AUDIO_POW): fetch it, then play.
    event.preventDefault();
    const link = event.currentTarget;
    link.setAttribute("aria-busy", "true");
    try {
      const query = audioPow ? `?altcha=${encodeURIComponent(await proofOfWork(null))}` : "";
      const response = await fetch(link.href + query);
      if (!response.ok) {
        throw new Refusal(await response.json().catch(() => ({})), response.status);
      }
      const player = byId("captcha-player");
      player.src = URL.createObjectURL(await response.blob());
      player.hidden = false;
      player.focus();
      player.play().catch(() => {}); // a browser may refuse autoplay: the controls remain
    } catch (error) {
      say(error.message, "error");
    } finally {
      link.removeAttribute("aria-busy");
    }
  });

  byId("captcha-refresh").addEventListener("click", () => {
    newCaptcha().catch((error) => say(error.message, "error"));
  });

  byId("send-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const phone = byId("phone").value;
    const request = { phone, purpose };
    if (wantsImage) {
      request.captcha_id = captchaId;
      request.captcha_answer = byId("captcha-answer").value;
    }
    try {
      if (wantsPow) {
        say("Checking your browser…");
        request.altcha = await proofOfWork(phone);
      }
      let sent;
      try {
        sent = await call("/send-code", request);
      } catch (error) {
        // Under risk the service asks for (harder) work too (OTP_CAPTCHA_KIND=auto, or a level
        // that rose since the challenge): one proof for this number, then try again.
        const kinds = (error.problem && error.problem.captcha_kinds) || [];
        if (error.problem.code !== "captcha_required" || !kinds.includes("pow")) {
          throw error;
        }
        request.altcha = await proofOfWork(phone);
        sent = await call("/send-code", request);
      }
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
    if (wantsImage) {
      newCaptcha().catch((error) => say(error.message, "error"));
    }
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

  if (wantsImage && !captchaId) {
    newCaptcha().catch((error) => say(error.message, "error"));
  }
})();
