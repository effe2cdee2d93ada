using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace Monitoring.Stream;

/// <summary>Cache prefetch hints; no-ops where the processor has no such instruction.</summary>
internal static unsafe class Prefetch
{
    /// <summary>Hints that the first cache lines of <paramref name="array"/> will be read soon.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Array<T>(T[]? array, int lines)
        where T : unmanaged
    {
        if (!Sse.IsSupported || array is null || array.Length == 0)
        {
            return;
        }

        // A hint only: the address is not kept, so a moving collector cannot invalidate anything.
        byte* start = (byte*)Unsafe.AsPointer(ref array[0]);
        int bytes = Math.Min(lines * 64, array.Length * sizeof(T));
        for (int offset = 0; offset < bytes; offset += 64)
        {
            Sse.Prefetch0(start + offset);
        }
    }

    /// <summary>Hints that <c>array[index]</c> will be read soon; the caller checked the index.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Element<T>(T[] array, int index)
        where T : unmanaged
    {
        if (Sse.IsSupported)
        {
            Sse.Prefetch0(Unsafe.AsPointer(ref array[index]));
        }
    }

    /// <summary>Hints that the fields of <paramref name="instance"/> (two cache lines from its start) will be read soon.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Object(object? instance)
    {
        if (!Sse.IsSupported || instance is null)
        {
            return;
        }

        byte* start = (byte*)Unsafe.AsPointer(ref Unsafe.As<RawObject>(instance).FirstField);
        Sse.Prefetch0(start);
        Sse.Prefetch0(start + 64);
    }

    /// <summary>
    /// Hints that the first <paramref name="lines"/> cache lines of <paramref name="instance"/> (an object
    /// or an array, from its first field or its length) will be read soon, without reading the object:
    /// <see cref="Array{T}"/> reads the array's length to bound its hints, a demand load of the very line
    /// it is about to request, which stalls the caller for the whole miss. Lines past the object's end are
    /// requested too (a hint never faults).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Lines(object? instance, int lines)
    {
        if (!Sse.IsSupported || instance is null)
        {
            return;
        }

        byte* start = (byte*)Unsafe.AsPointer(ref Unsafe.As<RawObject>(instance).FirstField);
        for (int offset = 0; offset < lines * 64; offset += 64)
        {
            Sse.Prefetch0(start + offset);
        }
    }

#pragma warning disable CS0649 // Never assigned: only its address is taken, to reach an object's first field.
    private sealed class RawObject
    {
        public byte FirstField;
    }
#pragma warning restore CS0649
}
