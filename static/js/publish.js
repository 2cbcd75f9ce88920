// The publish page: a click on the image sets the focal point the crops keep.
(function () {
  "use strict";
  const box = document.querySelector("[data-focal]");
  if (!box) return;
  const image = box.querySelector("img");
  const marker = box.querySelector(".focal-marker");
  const fx = document.querySelector("input[name=focal_x]");
  const fy = document.querySelector("input[name=focal_y]");
  const readout = document.querySelector("[data-focal-readout]");

  function show() {
    marker.style.left = `${parseFloat(fx.value) * 100}%`;
    marker.style.top = `${parseFloat(fy.value) * 100}%`;
    readout.textContent = `${parseFloat(fx.value).toFixed(3)}, ${parseFloat(fy.value).toFixed(3)}`;
  }
  image.addEventListener("click", (event) => {
    const rect = image.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    fx.value = clamp((event.clientX - rect.left) / rect.width).toFixed(4);
    fy.value = clamp((event.clientY - rect.top) / rect.height).toFixed(4);
    show();
  });
  show();
})();
