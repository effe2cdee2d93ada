using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Windows;

/// <summary>
/// The state of one open window in one shard: statistics per series slot, and the list of slots that
/// received points, so closing a window visits only those. Reused for later windows: clearing keeps
/// every array and sketch, so a shard in steady state allocates nothing.
/// </summary>
internal sealed class WindowBuffer
{
    private readonly double _relativeAccuracy;
    private readonly int _maxBins;
    private readonly bool _withSketches;
    private readonly Stack<DdSketch> _sketchPool;
    private ulong[] _touchedBits = [];

    /// <param name="capacity">Series slots to start with.</param>
    /// <param name="withSketches">Whether series keep a quantile sketch.</param>
    /// <param name="relativeAccuracy">The sketches' accuracy.</param>
    /// <param name="maxBins">The sketches' bin limit per sign.</param>
    /// <param name="sketchPool">
    /// Cleared sketches shared by the shard's windows: a window takes one for each series it sees and
    /// gives them back when it is reset. So a shard holds one sketch per series per open window that has
    /// its data, not one per series per window buffer it ever used (four times as many, and growing until
    /// every series had passed through every buffer).
    /// </param>
    public WindowBuffer(int capacity, bool withSketches, double relativeAccuracy, int maxBins, Stack<DdSketch>? sketchPool = null)
    {
        _sketchPool = sketchPool ?? new Stack<DdSketch>();
        _withSketches = withSketches;
        _relativeAccuracy = relativeAccuracy;
        _maxBins = maxBins;
        Moments = new RunningMoments[capacity];
        Sketches = new DdSketch?[withSketches ? capacity : 0];
        Touched = new int[capacity];
    }

    public long Start;

    public long End;

    public long Points;

    public RunningMoments[] Moments;

    public DdSketch?[] Sketches;

    public int[] Touched;

    public int TouchedCount;

    public bool WithSketches => _withSketches;

    public int Capacity => Moments.Length;

    /// <summary>Adds a point of the series in <paramref name="slot"/>; the caller ensured capacity.</summary>
    public void Add(int slot, double value, long timestamp) =>
        Add(slot, value, timestamp, _withSketches ? (Sketches[slot] ?? NewSketch(slot)).MagnitudeIndexOf(value) : 0);

    /// <summary>As <see cref="Add(int, double, long)"/>, with the value's sketch bin index computed ahead (<see cref="DdSketch.MagnitudeIndexOf"/>).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public void Add(int slot, double value, long timestamp, int magnitudeIndex)
    {
        ref RunningMoments moments = ref Moments[slot];
        if (moments.Count == 0)
        {
            Touched[TouchedCount++] = slot;
        }

        moments.Add(value, timestamp);
        if (_withSketches)
        {
            (Sketches[slot] ?? NewSketch(slot)).AddWithIndex(value, magnitudeIndex);
        }

        Points++;
    }

    private DdSketch NewSketch(int slot) => Sketches[slot] = _sketchPool.TryPop(out DdSketch? pooled) ? pooled : new DdSketch(_relativeAccuracy, _maxBins);

    public void Grow(int slots)
    {
        int capacity = Math.Max(slots, Capacity * 2);
        Array.Resize(ref Moments, capacity);
        Array.Resize(ref Touched, capacity);
        if (_withSketches)
        {
            Array.Resize(ref Sketches, capacity);
        }
    }

    /// <summary>
    /// Puts <see cref="Touched"/> in ascending slot order: stable output, series ids ascending within
    /// the shard. Slots are distinct and below <see cref="Capacity"/>, so a bitmap orders them in
    /// one pass over the bits instead of a comparison sort.
    /// </summary>
    public void SortTouched()
    {
        int words = (Capacity + 63) >> 6;
        if (_touchedBits.Length < words)
        {
            _touchedBits = new ulong[words];
        }

        ulong[] bits = _touchedBits;
        int count = TouchedCount;
        int[] touched = Touched;
        for (int i = 0; i < count; i++)
        {
            int slot = touched[i];
            bits[slot >> 6] |= 1UL << slot;
        }

        int r = 0;
        for (int w = 0; w < words && r < count; w++)
        {
            ulong word = bits[w];
            if (word == 0)
            {
                continue;
            }

            bits[w] = 0;
            do
            {
                touched[r++] = (w << 6) + System.Numerics.BitOperations.TrailingZeroCount(word);
                word &= word - 1;
            }
            while (word != 0);
        }
    }

    /// <summary>Bytes held by the arrays and the sketches of touched series.</summary>
    public long EstimateBytes()
    {
        long bytes = (long)Capacity * (System.Runtime.CompilerServices.Unsafe.SizeOf<RunningMoments>() + sizeof(int) + (_withSketches ? 8 : 0));
        for (int i = 0; i < TouchedCount && Sketches.Length > 0; i++)
        {
            bytes += Sketches[Touched[i]]?.EstimatedBytes ?? 0;
        }

        return bytes;
    }

    /// <summary>Drops the sketch kept for a reclaimed series' slot, so its memory goes.</summary>
    public void Forget(int slot)
    {
        if (slot < Sketches.Length)
        {
            Sketches[slot] = null;
        }
    }

    /// <summary>Forgets the window's data, keeping arrays and sketches for the next window.</summary>
    public void Reset()
    {
        for (int i = 0; i < TouchedCount; i++)
        {
            int slot = Touched[i];
            Moments[slot].Clear();
            if (_withSketches && Sketches[slot] is DdSketch sketch)
            {
                sketch.Clear();
                _sketchPool.Push(sketch);
                Sketches[slot] = null;
            }
        }

        TouchedCount = 0;
        Points = 0;
    }
}
