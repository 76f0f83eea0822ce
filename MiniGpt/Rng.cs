namespace MiniGpt;

/// <summary>
/// xoshiro256** (Blackman and Vigna, 2018), seeded through SplitMix64. A value type with an explicit
/// state, so the trainer can save it in a checkpoint and a resumed run draws exactly the same numbers.
/// System.Random's algorithm is an implementation detail and its state cannot be saved.
/// </summary>
public struct Rng
{
    private ulong _s0, _s1, _s2, _s3;

    public Rng(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix(ref x); _s1 = SplitMix(ref x); _s2 = SplitMix(ref x); _s3 = SplitMix(ref x);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextU64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject).</summary>
    public int NextInt(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n));
        ulong bound = (ulong)n;
        while (true)
        {
            UInt128 m = (UInt128)NextU64() * bound;
            ulong low = (ulong)m;
            if (low >= bound || low >= (0UL - bound) % bound) return (int)(m >> 64);
        }
    }

    /// <summary>Uniform double in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextU64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Standard normal by Box–Muller (one value per call, so the state stays a plain 256 bits).</summary>
    public double NextNormal()
    {
        double u1 = 1.0 - NextDouble(); // (0, 1]
        double u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    public string Save() => $"{_s0:x16}{_s1:x16}{_s2:x16}{_s3:x16}";

    public static Rng Load(string state)
    {
        if (state.Length != 64) throw new UserError("the checkpoint's RNG state is damaged (expected 64 hex digits): resume from another checkpoint");
        try
        {
            var r = new Rng();
            r._s0 = Convert.ToUInt64(state[..16], 16); r._s1 = Convert.ToUInt64(state[16..32], 16);
            r._s2 = Convert.ToUInt64(state[32..48], 16); r._s3 = Convert.ToUInt64(state[48..], 16);
            return r;
        }
        catch (FormatException) { throw new UserError("the checkpoint's RNG state is damaged (not hex): resume from another checkpoint"); }
    }
}
