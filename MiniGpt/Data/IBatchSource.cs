namespace MiniGpt.Data;

/// <summary>Where training batches come from: windows of a token stream, or a generated task.</summary>
public interface IBatchSource
{
    /// <summary>Fills inputs and targets [B, T] (targets are inputs shifted by one), drawing from rng.</summary>
    void Sample(ref Rng rng, Span<int> inputs, Span<int> targets, int B, int T);

    /// <summary>
    /// A fixed validation set: up to maxBatches batches of [B, T] inputs and targets, the same every call,
    /// with the mask of predictable positions when the source knows them (the induction task).
    /// </summary>
    IReadOnlyList<EvalBatch> ValidationBatches(int B, int T, int maxBatches);

    string Describe();
}

/// <summary>Random windows of n_ctx+1 tokens from a train split; validation is consecutive windows of the val split.</summary>
public sealed class TokenWindows : IBatchSource
{
    private readonly int[] _train;
    private readonly int[] _val;
    private readonly string _name;

    public TokenWindows(int[] train, int[] val, string name, int T)
    {
        if (train.Length < T + 1)
            throw new UserError($"{name}: the train split has {train.Length} tokens, fewer than one window of n_ctx+1 = {T + 1}: use more data or a smaller --n-ctx");
        if (val.Length < T + 1)
            throw new UserError($"{name}: the validation split has {val.Length} tokens, fewer than one window of n_ctx+1 = {T + 1}: use more data, a --val file or a smaller --n-ctx");
        _train = train; _val = val; _name = name;
    }

    public void Sample(ref Rng rng, Span<int> inputs, Span<int> targets, int B, int T)
    {
        for (int b = 0; b < B; b++)
        {
            int start = rng.NextInt(_train.Length - T);
            _train.AsSpan(start, T).CopyTo(inputs.Slice(b * T, T));
            _train.AsSpan(start + 1, T).CopyTo(targets.Slice(b * T, T));
        }
    }

    public IReadOnlyList<EvalBatch> ValidationBatches(int B, int T, int maxBatches) => Windows.Consecutive(_val, B, T, maxBatches);

    public string Describe() => $"{_name}: {_train.Length:N0} train / {_val.Length:N0} val tokens";
}

public static class Windows
{
    /// <summary>Non-overlapping windows i = 0, T, 2T, … (inputs t[i..i+T], targets t[i+1..i+T+1]) grouped in batches of up to B.</summary>
    public static List<EvalBatch> Consecutive(int[] tokens, int B, int T, int maxBatches = int.MaxValue)
    {
        var result = new List<EvalBatch>();
        int windows = (tokens.Length - 1) / T;
        for (int w0 = 0; w0 < windows && result.Count < maxBatches; w0 += B)
        {
            int nb = Math.Min(B, windows - w0);
            var x = new int[nb * T];
            var y = new int[nb * T];
            for (int b = 0; b < nb; b++)
            {
                tokens.AsSpan((w0 + b) * T, T).CopyTo(x.AsSpan(b * T));
                tokens.AsSpan((w0 + b) * T + 1, T).CopyTo(y.AsSpan(b * T));
            }
            result.Add(new EvalBatch(x, y));
        }
        return result;
    }
}
