"""LightningModules (classifier; teacher/student/distiller modules come with the compression issues) and callbacks."""
