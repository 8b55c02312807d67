"""Policy side of VLAC: interface, action codec and backends (ROS-free)."""
