using System.Runtime.InteropServices;

namespace MiniGpt.Tensors;

/// <summary>
/// Per-thread native scratch for kernels (64-byte aligned, grown on demand and then reused), so a
/// training step allocates nothing once every thread has seen its largest shape.
/// </summary>
internal static unsafe class Scratch
{
    [ThreadStatic] private static nint _buf;
    [ThreadStatic] private static long _cap;

    /// <summary>At least floats floats of this thread's scratch; the contents are whatever was there.</summary>
    public static float* Get(long floats) => Grow(ref _buf, ref _cap, floats);

    /// <summary>Returns buf, first reallocated (contents dropped) if it holds fewer than floats floats.</summary>
    internal static float* Grow(ref nint buf, ref long cap, long floats)
    {
        if (cap < floats)
        {
            if (buf != 0) NativeMemory.AlignedFree((void*)buf);
            long c = Math.Max(floats, 1L << 14);
            buf = (nint)NativeMemory.AlignedAlloc((nuint)(c * sizeof(float)), 64);
            cap = c;
        }
        return (float*)buf;
    }
}

/// <summary>
/// Per-thread native scratch that a kernel's calling thread hands to its parallel tasks (partial sums,
/// packed panels): separate from <see cref="Scratch"/>, which the calling thread's own tasks use for themselves.
/// </summary>
internal static unsafe class SharedScratch
{
    [ThreadStatic] private static nint _buf;
    [ThreadStatic] private static long _cap;

    public static float* Get(long floats) => Scratch.Grow(ref _buf, ref _cap, floats);
}
