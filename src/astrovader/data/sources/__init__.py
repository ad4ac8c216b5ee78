"""Where data comes from before it is prepared: simulated galaxies (GalSim, with their truth) and
survey cutouts downloaded for a catalogue. Both write an image folder and a catalogue that
`astrovader prepare` (data.cache) reads like any other."""
