namespace MiniGpt.Circuits;

/// <summary>
/// What the suppression scores share: a head suppresses when the eigenvalue score of its OV circuit
/// (<see cref="HeadProbe.OvEigenvalueScore"/>, Re(Σλ)/Σ|λ| of W_E·W_V·W_O·W_U) is at most
/// <see cref="MaxOvEigenvalueScore"/>: the tokens it attends to then mostly lose logit rather than gain it
/// (Elhage et al. 2021's copying score read with the opposite sign; −1 when every eigenvalue is a negative
/// real). Such a head's suppression score is its attention score (current- or previous-token), so the role needs
/// both the attention and the suppression; any other head scores 0.
/// </summary>
internal static class Suppression
{
    /// <summary>The OV eigenvalue score at or below which a head counts as suppressing: half of the −1 of a pure suppressor.</summary>
    public const double MaxOvEigenvalueScore = -0.5;

    public static double[][] Gate(HeadProbe probe, int offset) =>
        probe.PerHead((l, h) => probe.OvEigenvalueScore(l, h) <= MaxOvEigenvalueScore ? DiagonalAttention.Mean(probe, l, h, offset) : 0);
}
