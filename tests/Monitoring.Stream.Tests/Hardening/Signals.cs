using System.Diagnostics;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>Bounded waits on real signals: each one fails the test when its bound passes, never returns silently.</summary>
internal static class Signals
{
    /// <summary>The bound of every wait: generous for a loaded machine, short enough to fail fast.</summary>
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);

    /// <summary>Awaits <paramref name="task"/> (and its outcome, exceptions included) or fails the test after <see cref="Bound"/>.</summary>
    public static async Task Within(this Task task, string what)
    {
        Task finished = await Task.WhenAny(task, Task.Delay(Bound));
        Assert.True(ReferenceEquals(finished, task), $"{what} did not happen within {Bound.TotalSeconds} s");
        await task;
    }

    /// <summary>Awaits <paramref name="task"/> for its result or fails the test after <see cref="Bound"/>.</summary>
    public static async Task<T> Within<T>(this Task<T> task, string what)
    {
        Task finished = await Task.WhenAny(task, Task.Delay(Bound));
        Assert.True(ReferenceEquals(finished, task), $"{what} did not happen within {Bound.TotalSeconds} s");
        return await task;
    }

    /// <summary>Waits for a condition that a background task (a sink's loop) makes true; fails the test after <see cref="Bound"/>.</summary>
    public static Task Until(Func<bool> condition, string what) => Until(condition, () => what);

    /// <summary>As <see cref="Until(Func{bool}, string)"/>, with a description read when the wait fails (the state last seen).</summary>
    public static async Task Until(Func<bool> condition, Func<string> what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed >= Bound)
            {
                Assert.Fail($"{what()} did not happen within {Bound.TotalSeconds} s");
            }

            await Task.Delay(2);
        }
    }
}
