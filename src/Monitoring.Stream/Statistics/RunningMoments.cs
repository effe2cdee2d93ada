using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Monitoring.Stream.Statistics;

/// <summary>
/// Streaming moments of a stream of finite values: count, compensated sum, min, max, mean and M2
/// (Welford's update), and the last value by event time. Mergeable exactly (Chan et al.).
/// </summary>
/// <remarks>
/// A mutable struct meant to live in preallocated arrays and be updated through <c>ref</c>:
/// an update allocates nothing and takes no lock. Every moment stays finite for values of magnitude
/// at most <see cref="MaxMagnitude"/>; the caller is responsible for refusing other values (NaN,
/// infinities, larger magnitudes) before they reach <see cref="Add"/>; ingestion does that through
/// <c>PointValidator</c> and counts the rejections.
/// </remarks>
[StructLayout(LayoutKind.Auto)]
public struct RunningMoments : IEquatable<RunningMoments>
{
    /// <summary>
    /// The largest magnitude of a value for which count, sum, mean and M2 stay finite for any count a
    /// state can hold (up to 2^63 - 1), through any sequence of adds and merges.
    /// </summary>
    /// <remarks>
    /// With |x| &lt;= B and n &lt;= 2^63 (about 9.2e18): |sum| &lt;= nB; a deviation from a mean is at most
    /// 2B, so M2 &lt;= n (2B)^2; the shifts and shifted means that Welford's update and Chan's merge
    /// subtract are a few B at most, so every intermediate, the largest being the merge term
    /// delta^2 na nb / n, stays below 100 B^2 n. At B = 1e100 that is 1e222, 10^86 below
    /// double.MaxValue (1.8e308); the argument holds up to B of about 1e143. Physical measurements stay
    /// far below 1e100 (the observable universe holds about 1e80 atoms), so refusing beyond it loses
    /// no real data, while double.MaxValue itself overflows a sum of two values.
    /// </remarks>
    public const double MaxMagnitude = 1e100;

    private long _count;
    private double _sum;
    private double _sumCompensation;
    private double _min;
    private double _max;
    private double _shift;
    private double _mean;
    private double _m2;
    private double _last;
    private long _lastTimestamp;

    /// <summary>Number of values added or merged.</summary>
    public readonly long Count => _count;

    /// <summary>Sum of the values, with Neumaier compensation for the rounding of each addition.</summary>
    public readonly double Sum => _sum + _sumCompensation;

    /// <summary>Smallest value, or NaN when empty.</summary>
    public readonly double Min => _count == 0 ? double.NaN : _min;

    /// <summary>Largest value, or NaN when empty.</summary>
    public readonly double Max => _count == 0 ? double.NaN : _max;

    /// <summary>Arithmetic mean, or NaN when empty.</summary>
    public readonly double Mean
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _count == 0 ? double.NaN : _shift + _mean;
    }

    /// <summary>Sum of squared deviations from the mean (M2); both variances derive from it.</summary>
    public readonly double M2 => _count == 0 ? double.NaN : _m2;

    /// <summary>Population variance, M2 / n, or NaN when empty.</summary>
    public readonly double PopulationVariance
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _count == 0 ? double.NaN : _m2 / _count;
    }

    /// <summary>Sample (unbiased) variance, M2 / (n - 1), or NaN when fewer than two values.</summary>
    public readonly double SampleVariance => _count < 2 ? double.NaN : _m2 / (_count - 1);

    /// <summary>Population standard deviation, or NaN when empty.</summary>
    public readonly double PopulationStdDev => Math.Sqrt(PopulationVariance);

    /// <summary>Sample standard deviation, or NaN when fewer than two values.</summary>
    public readonly double SampleStdDev => Math.Sqrt(SampleVariance);

    /// <summary>The value with the latest timestamp (the later one on a tie), or NaN when empty.</summary>
    public readonly double Last => _count == 0 ? double.NaN : _last;

    /// <summary>The timestamp of <see cref="Last"/>, in the unit the caller used.</summary>
    public readonly long LastTimestamp => _lastTimestamp;

    /// <summary>Adds one value of magnitude at most <see cref="MaxMagnitude"/>, observed at <paramref name="timestamp"/>.</summary>
    /// <exception cref="OverflowException">The count is already 2^63 - 1; nothing changes.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(double value, long timestamp)
    {
        Debug.Assert(Math.Abs(value) <= MaxMagnitude, "Values beyond MaxMagnitude, NaN and infinities are refused before aggregation.");
        long n = checked(_count + 1);
        _count = n;
        if (n == 1)
        {
            Reset(value, timestamp);
            return;
        }

        AddAfterFirst(value, timestamp, n);
    }

    /// <summary>
    /// <see cref="Add"/> for a state that already holds a value (the caller checked <see cref="Count"/>): the same
    /// arithmetic, without the first value's branch and its call, which would make the caller's loop keep its
    /// state on the stack around it (the shard's in-place runs).
    /// </summary>
    /// <exception cref="OverflowException">The count is already 2^63 - 1; nothing changes.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void AddToStarted(double value, long timestamp)
    {
        Debug.Assert(_count > 0, "AddToStarted is for a state that holds a value already.");
        long n = checked(_count + 1);
        _count = n;
        AddAfterFirst(value, timestamp, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void AddAfterFirst(double value, long timestamp, long n)
    {
        // Neumaier's variant of Kahan summation: the rounding error of each addition is kept
        // separately, so a long sum of large values with small increments stays exact to ~1 ulp.
        double sum = _sum;
        double t = sum + value;
        _sumCompensation += Math.Abs(sum) >= Math.Abs(value) ? (sum - t) + value : (value - t) + sum;
        _sum = t;

        if (value < _min)
        {
            _min = value;
        }

        if (value > _max)
        {
            _max = value;
        }

        // Welford on shifted data: the deviation is taken from the running mean, never from zero,
        // and the values are first shifted by the first value seen. Near 1e9 with a spread of 1e-3
        // the subtraction is exact (Sterbenz) and the running mean then carries the small offset
        // at full precision; unshifted, its rounding (one ulp of 1e9 ~ 1.2e-7) would cost the
        // variance about 1e-5 of its value, and a plain sum of squares would lose it entirely.
        double shifted = value - _shift;
        double delta = shifted - _mean;
        _mean += delta / n;
        _m2 += delta * (shifted - _mean);

        if (timestamp >= _lastTimestamp)
        {
            _last = value;
            _lastTimestamp = timestamp;
        }
    }

    /// <summary>Merges another partial state into this one, as if its values had been added here.</summary>
    /// <exception cref="OverflowException">The counts together exceed 2^63 - 1; this state is left unchanged.</exception>
    public void Merge(in RunningMoments other)
    {
        if (other._count == 0)
        {
            return;
        }

        if (_count == 0)
        {
            this = other;
            return;
        }

        long na = _count;
        long nb = other._count;
        if (na > long.MaxValue - nb)
        {
            throw new OverflowException($"Merging would take the count past 2^63 - 1 ({na} + {nb}); the state is unchanged.");
        }

        long n = na + nb;

        // Chan, Golub and LeVeque's pairwise combination: exact in real arithmetic, and stable
        // because it only uses the difference of the two means, never raw power sums. The
        // difference of shifts is taken first: for nearby data it is exact.
        double delta = (other._shift - _shift) + (other._mean - _mean);
        double nbOverN = (double)nb / n;
        _mean += delta * nbOverN;
        _m2 += other._m2 + delta * delta * na * nbOverN;
        _count = n;

        double sum = _sum;
        double t = sum + other._sum;
        _sumCompensation += (Math.Abs(sum) >= Math.Abs(other._sum) ? (sum - t) + other._sum : (other._sum - t) + sum)
            + other._sumCompensation;
        _sum = t;

        if (other._min < _min)
        {
            _min = other._min;
        }

        if (other._max > _max)
        {
            _max = other._max;
        }

        if (other._lastTimestamp >= _lastTimestamp)
        {
            _last = other._last;
            _lastTimestamp = other._lastTimestamp;
        }
    }

    /// <summary>Forgets every value, keeping the state ready for reuse.</summary>
    public void Clear() => this = default;

    /// <summary>Rebuilds a state from its parts, as read back from an emitted aggregate.</summary>
    /// <exception cref="ArgumentException">
    /// The parts could not come from values of magnitude at most <see cref="MaxMagnitude"/>: a value is
    /// not finite or beyond it, min exceeds max, or sum, mean, M2 or last lie outside what such values allow.
    /// </exception>
    public static RunningMoments FromParts(long count, double sum, double min, double max, double mean, double m2, double last, long lastTimestamp)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count == 0)
        {
            return default;
        }

        // Refusing what in-range values cannot produce keeps every later merge finite (see MaxMagnitude):
        // the mean and the last value lie within the extremes (the mean to rounding), the sum within
        // count times the largest magnitude, and M2 within count (2B)^2 (its true maximum is count B^2).
        double largest = Math.Max(Math.Abs(min), Math.Abs(max));
        double bound = MaxMagnitude;
        if (!(min <= max) || !(largest <= bound) || !(Math.Abs(mean) <= 2 * largest) || !(Math.Abs(last) <= largest)
            || !(Math.Abs(sum) <= 2 * largest * count) || !(m2 >= 0 && m2 <= 4 * bound * bound * count))
        {
            throw new ArgumentException($"Inconsistent moments: count={count}, sum={sum}, min={min}, max={max}, mean={mean}, m2={m2}, last={last}.");
        }

        return new RunningMoments
        {
            _count = count,
            _sum = sum,
            _min = min,
            _max = max,
            _shift = mean,
            _m2 = m2,
            _last = last,
            _lastTimestamp = lastTimestamp,
        };
    }

    private void Reset(double value, long timestamp)
    {
        _sum = value;
        _sumCompensation = 0;
        _min = value;
        _max = value;
        _shift = value;
        _mean = 0;
        _m2 = 0;
        _last = value;
        _lastTimestamp = timestamp;
    }

    /// <inheritdoc />
    public readonly bool Equals(RunningMoments other) =>
        _count == other._count && Sum.Equals(other.Sum) && _min.Equals(other._min) && _max.Equals(other._max)
        && Mean.Equals(other.Mean) && _m2.Equals(other._m2) && _last.Equals(other._last) && _lastTimestamp == other._lastTimestamp;

    /// <inheritdoc />
    public override readonly bool Equals(object? obj) => obj is RunningMoments other && Equals(other);

    /// <inheritdoc />
    public override readonly int GetHashCode() => HashCode.Combine(_count, Sum, Mean, _m2);

    /// <summary>Compares two states field by field.</summary>
    public static bool operator ==(RunningMoments left, RunningMoments right) => left.Equals(right);

    /// <summary>Compares two states field by field.</summary>
    public static bool operator !=(RunningMoments left, RunningMoments right) => !left.Equals(right);

    /// <inheritdoc />
    public override readonly string ToString() =>
        _count == 0 ? "n=0" : $"n={_count} sum={Sum:R} min={_min:R} max={_max:R} mean={Mean:R} sd={SampleStdDev:R} last={_last:R}";
}
