namespace MiniGpt.Circuits;

/// <summary>One repeated random sequence and the attention pattern [T, T] of each chosen head on it.</summary>
public sealed record AttentionExample(int[] Tokens, int Half, List<(int Layer, int Head, float[] Pattern)> Heads);
