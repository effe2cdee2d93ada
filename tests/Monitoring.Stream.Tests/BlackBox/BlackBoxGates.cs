using System.Collections.Concurrent;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// One gate per sink call, opened one at a time or all at once. Unlike the hardening tests' helper, a gate created
/// while <see cref="OpenAll"/> runs cannot be missed: each call checks the flag after adding its gate.
/// </summary>
internal sealed class BlackBoxGates
{
    private readonly ConcurrentDictionary<int, TaskCompletionSource> _gates = new();
    private volatile bool _allOpen;

    /// <summary>The gate of call <paramref name="index"/> (from 1).</summary>
    public Task For(int index)
    {
        TaskCompletionSource gate = Get(index);
        if (_allOpen)
        {
            gate.TrySetResult();
        }

        return gate.Task;
    }

    public void Open(int index) => Get(index).TrySetResult();

    /// <summary>Opens every gate, now and later.</summary>
    public void OpenAll()
    {
        _allOpen = true;
        foreach (TaskCompletionSource gate in _gates.Values)
        {
            gate.TrySetResult();
        }
    }

    private TaskCompletionSource Get(int index) =>
        _gates.GetOrAdd(index, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
}
