namespace MiniGpt.Generation;

/// <summary>
/// What <see cref="Generator"/> does once the context holds n_ctx tokens and another arrives. Positions are
/// absolute (W_pos[p]), so sliding the window by one token moves every cached key to another position and the
/// cache no longer describes the window.
/// </summary>
public enum SlidePolicy
{
    /// <summary>
    /// nanoGPT's window: each token past n_ctx runs one forward pass over the last n_ctx tokens (idx[:, -block_size:]),
    /// so the logits are those of the uncached loop, bit for bit, and each such token costs what an uncached one does.
    /// </summary>
    Exact,

    /// <summary>
    /// Cheaper, and not nanoGPT's window: when the cache is full, keep the last n_ctx/2 tokens (the new one
    /// included), re-prefill them in one forward pass, and decode one position per token until the cache is full
    /// again: one window-sized forward per n_ctx/2 + 1 tokens. The context a token sees is then between n_ctx/2 and
    /// n_ctx tokens long, so its logits differ from nanoGPT's past n_ctx.
    /// </summary>
    Half,
}
