namespace MiniGpt.Data;

/// <summary>
/// The synthetic induction task, generated per window from the RNG (so it needs no files):
/// uniform random tokens, in which a span of random length L is copied from a random earlier
/// position p to a random later position q ≥ p + L. Predicting the 2nd … L-th token of the copy
/// needs an induction head ("I saw A B before; now I see A, so predict B"); every other position is
/// noise with loss ln(vocab). Both L and the distance q − p vary from window to window: with a fixed
/// period a single layer-0 head attending a fixed offset back solves it and no induction circuit forms.
/// When the vocabulary has at least as many tokens as the window, the random tokens are drawn without
/// replacement, so the copied span is the only repetition: "the token after the last occurrence of
/// the current token" is then always right, and the repeated half can be predicted almost perfectly.
/// </summary>
public sealed class InductionTask : IBatchSource
{
    public int Vocab { get; }
    public int MinSpan { get; }
    public int MaxSpan { get; }
    public const int MaxValidationBatches = 8;
    private readonly ulong _valSeed;

    public InductionTask(int vocab, int nCtx, ulong seed)
    {
        if (vocab < 4) throw new UserError($"the induction task needs d_vocab ≥ 4, got {vocab}");
        if (nCtx < 8) throw new UserError($"the induction task needs n_ctx ≥ 8, got {nCtx}");
        Vocab = vocab;
        MinSpan = Math.Max(2, nCtx / 8);
        MaxSpan = Math.Max(MinSpan, (nCtx + 1) / 2);
        _valSeed = seed ^ 0x5EED_0F_7A11DA7AUL;
    }

    /// <summary>Generates one window of T+1 tokens; mask[i] = true where token i+1 (the target of i) is a predictable copy.</summary>
    public void Window(ref Rng rng, Span<int> window, Span<bool> predictable)
    {
        int n = window.Length;
        if (Vocab >= n && Vocab <= 4096)
        {
            // the first n of a random permutation of the vocabulary (partial Fisher–Yates)
            Span<int> perm = stackalloc int[Vocab];
            for (int i = 0; i < Vocab; i++) perm[i] = i;
            for (int i = 0; i < n; i++)
            {
                int j = i + rng.NextInt(Vocab - i);
                (perm[i], perm[j]) = (perm[j], perm[i]);
                window[i] = perm[i];
            }
        }
        else
            for (int i = 0; i < n; i++) window[i] = rng.NextInt(Vocab);
        int L = MinSpan + rng.NextInt(MaxSpan - MinSpan + 1);
        int p = rng.NextInt(n - 2 * L + 1);          // first occurrence [p, p+L)
        int q = p + L + rng.NextInt(n - 2 * L - p + 1); // copy [q, q+L), after the first
        window.Slice(p, L).CopyTo(window.Slice(q, L));
        predictable.Clear();
        // target of position i is window[i+1]; copies of tokens q+1 … q+L-1 are predictable from i = q … q+L-2
        for (int i = q; i < q + L - 1 && i < predictable.Length; i++) predictable[i] = true;
    }

    public void Sample(ref Rng rng, Span<int> inputs, Span<int> targets, int B, int T)
    {
        Span<int> w = T + 1 <= 4096 ? stackalloc int[T + 1] : new int[T + 1];
        Span<bool> m = T + 1 <= 4096 ? stackalloc bool[T + 1] : new bool[T + 1];
        for (int b = 0; b < B; b++)
        {
            Window(ref rng, w, m);
            w[..T].CopyTo(inputs.Slice(b * T, T));
            w[1..].CopyTo(targets.Slice(b * T, T));
        }
    }

    /// <summary>
    /// Validation batches, each position's mask saying whether its target is a predictable copy. At most
    /// <see cref="MaxValidationBatches"/>: generated windows are all alike, so more only costs time.
    /// </summary>
    public IReadOnlyList<EvalBatch> ValidationBatches(int B, int T, int maxBatches) =>
        ValidationWindows(B * Math.Min(maxBatches, MaxValidationBatches), B, T);

    /// <summary>
    /// The first <paramref name="windows"/> validation windows in batches of up to B. Window k is the same
    /// whatever B is (one generator, drawn in order), so any batching of the same windows measures the same.
    /// </summary>
    public List<EvalBatch> ValidationWindows(int windows, int B, int T)
    {
        var rng = new Rng(_valSeed);
        var result = new List<EvalBatch>();
        var w = new int[T + 1];
        var m = new bool[T + 1];
        for (int w0 = 0; w0 < windows; w0 += B)
        {
            int nb = Math.Min(B, windows - w0);
            var x = new int[nb * T]; var y = new int[nb * T]; var mask = new bool[nb * T];
            for (int b = 0; b < nb; b++)
            {
                Window(ref rng, w, m);
                w.AsSpan(0, T).CopyTo(x.AsSpan(b * T));
                w.AsSpan(1, T).CopyTo(y.AsSpan(b * T));
                m.AsSpan(0, T).CopyTo(mask.AsSpan(b * T));
            }
            result.Add(new EvalBatch(x, y, mask));
        }
        return result;
    }

    public string Describe() => $"induction task: vocab {Vocab}, repeated spans of {MinSpan}–{MaxSpan} tokens at random distances";
}
