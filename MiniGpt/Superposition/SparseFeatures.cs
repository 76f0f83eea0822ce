namespace MiniGpt.Superposition;

/// <summary>
/// The paper's synthetic input: each feature of each sample is 0 with probability S (the sparsity) and
/// otherwise uniform on [0, 1] (so it is active with the feature probability 1 − S), independently.
/// One uniform draw u ∈ [0, 1) decides both: the feature is active when u ≥ S, with the value
/// (u − S)/(1 − S), which is uniform on [0, 1) given u ≥ S. That halves the draws of the two-draw form and
/// leaves 53 − log2(1/(1 − S)) random bits in the value (43 at S = 0.999), far more than a float holds.
/// </summary>
public static class SparseFeatures
{
    /// <summary>Fills x [batch, n] row-major, drawing from rng in row-major order.</summary>
    public static void Fill(Span<float> x, double sparsity, ref Rng rng)
    {
        if (!(sparsity >= 0 && sparsity < 1)) throw new ArgumentException($"sparsity must be in [0, 1), got {sparsity}");
        double inv = 1 / (1 - sparsity);
        for (int i = 0; i < x.Length; i++)
        {
            double u = rng.NextDouble();
            x[i] = u >= sparsity ? (float)((u - sparsity) * inv) : 0f;
        }
    }
}
