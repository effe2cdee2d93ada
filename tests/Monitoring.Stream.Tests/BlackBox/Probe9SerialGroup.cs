namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>Runs its tests alone: they watch the engine's process-wide clock thread, which other tests' writers would wake.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class Probe9SerialGroup
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Probe9 serial";
}
