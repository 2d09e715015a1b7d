// Glass-to-glass latency, read on the watch page (run in the page by the
// latency test and by make bench's glass phase). The publisher
// (bench/publisher.py with `stamp`) writes each frame's capture time into its
// top band: 40 square blocks, 32 bits of the wall clock in ms (mod 2^32) and
// an 8-bit sum. For every frame the player presents, requestVideoFrameCallback
// gives its expected display time; the difference is the latency from capture
// to screen. Results collect in window.glass: samples (ms), frames, bad
// (frames whose stamp did not read back), early (stamps later than the frame's
// display: the video moved on to the next frame before this callback drew it,
// which a busy machine does now and then; or clocks out of step by more than
// the latency, which makes every low-latency frame early).
(() => {
  const BITS = 40;
  const video = document.getElementById("stream-video");
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const glass = { samples: [], frames: 0, bad: 0, early: 0 };
  window.glass = glass;
  const onFrame = (_now, meta) => {
    const width = meta.width;
    const block = Math.floor(width / BITS);
    if (block >= 2) {
      canvas.width = width;
      canvas.height = block;
      ctx.drawImage(video, 0, 0, width, block, 0, 0, width, block);
      const px = ctx.getImageData(0, 0, width, block).data;
      const y = Math.floor(block / 2);
      let word = 0n;
      for (let i = 0; i < BITS; i++) {
        const x = Math.floor((i + 0.5) * block);
        word = (word << 1n) | (px[(y * width + x) * 4] > 128 ? 1n : 0n);
      }
      const value = Number(word >> 8n);
      const sum = ((value >>> 24) + ((value >>> 16) & 255) + ((value >>> 8) & 255) + (value & 255)) & 255;
      glass.frames += 1;
      const shown = Math.round(performance.timeOrigin + meta.expectedDisplayTime) % 2 ** 32;
      // The difference modulo 2^32, as a signed number (wrap-around aside).
      let latency = (shown - value + 2 ** 32) % 2 ** 32;
      if (latency > 2 ** 31) latency -= 2 ** 32;
      if (sum !== Number(word & 0xffn) || Math.abs(latency) > 60000) glass.bad += 1;
      else if (latency < 0) glass.early += 1;
      else glass.samples.push(latency);
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
})();
