using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Monitoring.Stream.Statistics;

/// <summary>
/// Dense bin counts of one sign of a <see cref="DdSketch"/>: a contiguous array of counters covering
/// bin indices <c>[_offset, _offset + _counts.Length)</c>, grown on demand and bounded by the
/// sketch's bin limit.
/// </summary>
/// <remarks>
/// When the occupied range would exceed the limit, bins are collapsed at one end: the positive
/// store folds its lowest bins into the lowest kept bin, the negative store folds its highest
/// bins (the largest magnitudes) into the highest kept bin. Either way the upper quantiles of the
/// whole distribution keep their accuracy. Folding is a clamp of the bin index, so the result does
/// not depend on the order in which values or partial sketches arrived.
/// </remarks>
[StructLayout(LayoutKind.Auto)]
internal struct DdSketchBinStore
{
    private const int InitialLength = 32;

    private uint[]? _counts;
    private int _offset;

    /// <summary>Values whose bin had already reached <see cref="uint.MaxValue"/>.</summary>
    public ulong SaturatedCount;

    public readonly bool IsAllocated => _counts is not null;

    /// <summary>Bins the array holds, occupied or not.</summary>
    public readonly int Capacity => _counts?.Length ?? 0;

    /// <summary>Bytes held by the counter array.</summary>
    public readonly int AllocatedBytes => _counts is null ? 0 : (_counts.Length * sizeof(uint)) + 24;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Increment(int index, int maxBins, bool collapseHighest)
    {
        uint[]? counts = _counts;
        int slot = index - _offset;
        // PERF: one unsigned compare covers both ends and the unallocated case (length 0 via null check).
        if (counts is not null && (uint)slot < (uint)counts.Length)
        {
            ref uint c = ref counts[slot];
            if (++c == 0)
            {
                c = uint.MaxValue;
                SaturatedCount++;
            }

            return;
        }

        AddSlow(index, 1, maxBins, collapseHighest);
    }

    /// <summary>Adds <paramref name="count"/> to the bin at <paramref name="index"/>.</summary>
    public void Add(int index, uint count, int maxBins, bool collapseHighest)
    {
        if (count == 0)
        {
            return;
        }

        uint[]? counts = _counts;
        int slot = index - _offset;
        if (counts is not null && (uint)slot < (uint)counts.Length)
        {
            AddSaturating(ref counts[slot], count);
            return;
        }

        AddSlow(index, count, maxBins, collapseHighest);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void AddSlow(int index, uint count, int maxBins, bool collapseHighest)
    {
        if (!TryGetOccupiedRange(out int lo, out int hi))
        {
            // An emptied store keeps its array: a window state reused for the next window
            // should not allocate again.
            _counts ??= new uint[Math.Min(InitialLength, maxBins)];

            // Centre on the first value: data tends to spread both ways.
            _offset = index - (_counts.Length / 2);
            _counts[index - _offset] = count;
            return;
        }

        lo = Math.Min(lo, index);
        hi = Math.Max(hi, index);
        int windowLo = lo;
        int windowHi = hi;
        if ((long)hi - lo + 1 > maxBins)
        {
            if (collapseHighest)
            {
                windowHi = lo + maxBins - 1;
            }
            else
            {
                windowLo = hi - maxBins + 1;
            }
        }

        int needed = windowHi - windowLo + 1;
        // Grow by half of what is needed, not by doubling the array: data that widens a little at
        // one end and then the other would otherwise double it each time, and a latency sketch of
        // ~150 occupied bins would hold thousands. Most of the room goes to the side that grew.
        int newLength = Math.Min(maxBins, Math.Max(InitialLength, needed + (needed / 2)));
        int slack = newLength - needed;
        int newOffset = index < _offset ? windowLo - (slack - (slack / 4)) : windowLo - (slack / 4);

        var grown = new uint[newLength];
        uint[] old = _counts!;
        for (int i = 0; i < old.Length; i++)
        {
            if (old[i] != 0)
            {
                int target = Math.Clamp(_offset + i, windowLo, windowHi);
                AddSaturating(ref grown[target - newOffset], old[i]);
            }
        }

        AddSaturating(ref grown[Math.Clamp(index, windowLo, windowHi) - newOffset], count);
        _counts = grown;
        _offset = newOffset;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void AddSaturating(ref uint bin, uint count)
    {
        uint sum = bin + count;
        if (sum < bin)
        {
            SaturatedCount += sum + 1UL;
            sum = uint.MaxValue;
        }

        bin = sum;
    }

    /// <summary>Hints the processor to fetch the first <paramref name="lines"/> cache lines of the counts.</summary>
    public readonly void Prefetch(int lines) => Monitoring.Stream.Prefetch.Array(_counts, lines);

    /// <summary>Finds the lowest and highest bin index with a non-zero count.</summary>
    public readonly bool TryGetOccupiedRange(out int lo, out int hi)
    {
        lo = hi = 0;
        uint[]? counts = _counts;
        if (counts is null)
        {
            return false;
        }

        int first = counts.AsSpan().IndexOfAnyExcept(0u);
        if (first < 0)
        {
            return false;
        }

        int last = counts.AsSpan().LastIndexOfAnyExcept(0u);
        lo = _offset + first;
        hi = _offset + last;
        return true;
    }

    /// <summary>The count of the bin at <paramref name="index"/> (zero outside the array).</summary>
    public readonly uint CountAt(int index)
    {
        uint[]? counts = _counts;
        int slot = index - _offset;
        return counts is not null && (uint)slot < (uint)counts.Length ? counts[slot] : 0;
    }

    /// <summary>The counts of the occupied range, lowest index first, with that range's first index.</summary>
    public readonly ReadOnlySpan<uint> OccupiedCounts(out int firstIndex)
    {
        if (!TryGetOccupiedRange(out int lo, out int hi))
        {
            firstIndex = 0;
            return [];
        }

        firstIndex = lo;
        return _counts.AsSpan(lo - _offset, hi - lo + 1);
    }

    /// <summary>Zeroes every bin, keeping the array for reuse.</summary>
    public void Clear()
    {
        if (_counts is not null)
        {
            Array.Clear(_counts);
        }

        SaturatedCount = 0;
    }
}
