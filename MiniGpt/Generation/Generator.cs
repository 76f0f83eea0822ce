using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Tensors;

namespace MiniGpt.Generation;

/// <summary>Picks the next token from the next-token logits [d_vocab].</summary>
public delegate int TokenPicker(ReadOnlySpan<float> logits);

/// <summary>
/// Autoregressive generation for one sequence (batch 1), with a key/value cache (<see cref="KvCache"/>) or
/// without it. <see cref="Prefill"/> starts a sequence and <see cref="Append"/> adds one token; both return the
/// next-token logits [d_vocab], those of nanoGPT's loop: the last position of a forward pass over the last
/// min(length, n_ctx) tokens.
///
/// Cached (the default): the prefill is one <see cref="GptModel.Forward"/> over the prompt, whose hook_k and hook_v
/// are copied into the cache; then each new token at position t runs one position through the model,
///   x = W_E[tok] (+ W_pos[t]);  per block: x_ln = ln1(x), q, k, v = x_qk·W_Q/K/V + b (k, v appended to the cache),
///   z = attention of q over the cached keys, x += z·W_O + b_O;  x += W_out·gelu(W_in·ln2(x) + b_in) + b_out;
///   logits = ln_final(x)·W_U + b_U
/// (x_qk = x_ln, or x_ln + W_pos[t] with shortformer positions; no ln without LayerNorm; no MLP when attn_only),
/// each product a GEMV of the model's kernel set (<see cref="IKernels.Gemv"/>) that reads each weight once.
/// Past n_ctx the window slides as <see cref="Policy"/> says (<see cref="SlidePolicy.Exact"/>: nanoGPT's window,
/// one whole-window forward per token there, as uncached).
///
/// Uncached (useCache false): every token runs <see cref="GptModel.Forward"/> over the window, the old sample loop.
///
/// Hooks: the cached path cannot fire the model's hooks with the shapes they are written for (a pass of one
/// position, a pattern row instead of [T, T]), and falling back silently would let a hook that only reads change
/// the logits' last bits; so it refuses: Prefill and Append throw while any hook is registered. Generate uncached
/// to run hooks (each token's forward fires them on the whole window, as any forward pass does).
///
/// Both paths run <see cref="GptModel.Forward"/> (the prefill, the slides), which overwrites the model's
/// activations. Steady-state decoding allocates nothing; results are the same for any thread count.
/// </summary>
public sealed class Generator
{
    public GptModel Model { get; }
    public bool UseCache { get; }
    public SlidePolicy Policy { get; }
    public KvCache? Cache { get; }

    /// <summary>Tokens in the current window (the positions the cache holds, when cached), [0, n_ctx].</summary>
    public int Length => _len;

    /// <summary>The next-token logits [d_vocab] after the last Prefill or Append.</summary>
    public ReadOnlySpan<float> Logits => _logits;

    private readonly ModelConfig _c;
    private readonly ModelParams _p;
    private readonly IKernels _k;
    private readonly int[] _window; // the current window's tokens, [n_ctx]
    private int _len;
    private bool _started;
    private readonly float[] _logits;
    // one position's activations: residual stream, LayerNorm output (and its mean, rstd), query/key input, q, z,
    // a branch's output, the MLP's hidden layer before and after GELU; the score rows of every head [H, n_ctx]
    private readonly float[] _x, _ln, _mean = new float[1], _rstd = new float[1], _qk, _q, _z, _branch, _pre, _post, _scores;

    public Generator(GptModel model, bool useCache = true, SlidePolicy policy = SlidePolicy.Exact)
    {
        Model = model;
        UseCache = useCache;
        Policy = policy;
        _c = model.Config;
        _p = ModelParams.From(model.Params, _c);
        _k = model.Kernels;
        int D = _c.DModel, HD = _c.NHeads * _c.DHead, M = _c.HasMlp ? _c.DMlp : 0;
        _window = new int[_c.NCtx];
        _logits = new float[_c.DVocab];
        if (!useCache)
        {
            _x = _ln = _qk = _q = _z = _branch = _pre = _post = _scores = [];
            return;
        }
        Cache = new KvCache(_c);
        _x = new float[D]; _ln = new float[D]; _qk = new float[D]; _branch = new float[D];
        _q = new float[HD]; _z = new float[HD];
        _pre = new float[M]; _post = new float[M];
        _scores = new float[_c.NHeads * _c.NCtx];
    }

    /// <summary>
    /// Starts a sequence with prompt (at least one token; a longer prompt than n_ctx keeps its last n_ctx tokens,
    /// as nanoGPT crops) and returns the logits of the token after it.
    /// </summary>
    public ReadOnlySpan<float> Prefill(ReadOnlySpan<int> prompt)
    {
        if (prompt.IsEmpty) throw new ArgumentException("the prompt is empty: give at least one token");
        CheckHooks();
        var window = prompt.Length > _c.NCtx ? prompt[^_c.NCtx..] : prompt;
        window.CopyTo(_window);
        _len = window.Length;
        _started = true;
        ForwardWindow();
        return _logits;
    }

    /// <summary>Adds token to the sequence and returns the logits of the token after it.</summary>
    public ReadOnlySpan<float> Append(int token)
    {
        if (!_started) throw new InvalidOperationException("Append before Prefill: start the sequence with a prompt first");
        if ((uint)token >= (uint)_c.DVocab)
            throw new UserError($"token {token} is outside the vocabulary [0, {_c.DVocab}): the token does not match the model's d_vocab");
        CheckHooks();
        int n = _c.NCtx;
        if (_len < n && UseCache)
        {
            _window[_len] = token;
            Decode(token, _len);
            _len++;
            return _logits;
        }
        if (_len == n)
        {
            // the window slides: keep the last keep − 1 tokens before the new one
            int keep = UseCache && Policy == SlidePolicy.Half ? Math.Max(1, n / 2) : n;
            Array.Copy(_window, n - keep + 1, _window, 0, keep - 1);
            _len = keep - 1;
        }
        _window[_len++] = token;
        ForwardWindow();
        return _logits;
    }

    /// <summary>
    /// Prefills prompt, then generates output.Length tokens, each picked from the logits after the one before.
    /// </summary>
    public void Generate(ReadOnlySpan<int> prompt, Span<int> output, TokenPicker pick)
    {
        if (output.IsEmpty) return;
        var logits = Prefill(prompt);
        for (int i = 0; i < output.Length; i++)
        {
            output[i] = pick(logits);
            if (i + 1 < output.Length) logits = Append(output[i]);
        }
    }

    private void CheckHooks()
    {
        if (UseCache && !Model.Hooks.IsEmpty)
            throw new InvalidOperationException("the model has hooks registered, and cached generation fires none of them: " +
                "generate without the cache (new Generator(model, useCache: false); sample --no-cache) to run them, or remove them");
    }

    /// <summary>A forward pass over the window; its last row's logits, and (cached) its keys and values into the cache.</summary>
    private void ForwardWindow()
    {
        int T = _len, V = _c.DVocab;
        Model.Forward(_window.AsSpan(0, T), ReadOnlySpan<int>.Empty, 1, T);
        Model.Logits.Slice((T - 1) * V, V).CopyTo(_logits);
        // a full window under the exact policy slides again on the next token, which runs the window once more:
        // the cache would never be read (75 MB of copies a token for GPT-2 small)
        if (Cache == null || (Policy == SlidePolicy.Exact && T == _c.NCtx)) return;
        // hook_k, hook_v [1, T, H, d_head] are the cache's first T rows
        int rows = T * _c.NHeads * _c.DHead;
        var a = Model.Cache!;
        for (int l = 0; l < _c.NLayers; l++)
        {
            a.Blocks[l].K.Span[..rows].CopyTo(Cache.Keys(l));
            a.Blocks[l].V.Span[..rows].CopyTo(Cache.Values(l));
        }
        Cache.Length = T;
    }

    /// <summary>One position, t, through the model (see the class comment), its k and v into row t of the cache.</summary>
    private void Decode(int token, int t)
    {
        var c = _c;
        var k = _k;
        int D = c.DModel, H = c.NHeads, dh = c.DHead, HD = H * dh, M = c.DMlp, V = c.DVocab;
        var x = _x.AsSpan();
        var pos = _p.WPos.Span.Slice(t * D, D);

        // resid_pre₀ = W_E[token] + W_pos[t]; shortformer positions enter only the queries and keys
        _p.WE.Span.Slice(token * D, D).CopyTo(x);
        if (!c.Shortformer) k.Add(x, pos, x);

        for (int l = 0; l < c.NLayers; l++)
        {
            var w = _p.Blocks[l];
            ReadOnlySpan<float> xln = Normalize(x, w.Ln1W, w.Ln1B);
            ReadOnlySpan<float> xqk = xln;
            if (c.Shortformer)
            {
                k.Add(xln, pos, _qk);
                xqk = _qk;
            }
            // q [H, dh] for this position; k and v straight into the cache's row t
            k.Gemv(xqk, w.WQ.Span, w.BQ.Span, _q, H, D, dh);
            k.Gemv(xqk, w.WK.Span, w.BK.Span, Cache!.KeyRow(l, t), H, D, dh);
            k.Gemv(xln, w.WV.Span, w.BV.Span, Cache.ValueRow(l, t), H, D, dh);
            CachedAttention.Forward(_q, Cache.Keys(l), Cache.Values(l), _scores, _z, t, H, dh, c.NCtx);
            // resid_mid = resid_pre + z·W_O + b_O
            k.Gemv(_z, w.WO.Span, w.BO.Span, _branch, 1, HD, D);
            k.Add(x, _branch, x);
            if (!c.HasMlp) continue;
            // resid_post = resid_mid + W_out·gelu(W_in·ln2(resid_mid) + b_in) + b_out
            ReadOnlySpan<float> x2 = Normalize(x, w.Ln2W, w.Ln2B);
            k.Gemv(x2, w.WIn!.Span, w.BIn!.Span, _pre, 1, D, M);
            k.GeluForward(_pre, _post);
            k.Gemv(_post, w.WOut!.Span, w.BOut!.Span, _branch, 1, M, D);
            k.Add(x, _branch, x);
        }
        Cache!.Length = t + 1;

        // logits = ln_final(resid)·W_U + b_U
        ReadOnlySpan<float> xf = Normalize(x, _p.LnFinalW, _p.LnFinalB);
        k.Gemv(xf, _p.WU.Span, _p.BU.Span, _logits, 1, D, V);
    }

    /// <summary>LayerNorm of the one position into the scratch row, or x itself for a model without LayerNorm.</summary>
    private ReadOnlySpan<float> Normalize(ReadOnlySpan<float> x, Tensor? w, Tensor? b)
    {
        if (!_c.HasLayerNorm) return x;
        _k.LayerNormForward(x, w is null ? default : w.Span, b is null ? default : b.Span, _ln, _mean, _rstd, 1, _c.DModel);
        return _ln;
    }
}
